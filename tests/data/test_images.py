"""load_image: every format a user drops in a folder, converted the same way every time."""
import numpy as np
import pytest
from PIL import Image

from cnnkit.data.images import load_image
from cnnkit.errors import CnnkitError


def gradient_rgb(h=12, w=20):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 12, y * 20, 255 - x * 12], axis=-1).astype(np.uint8)  # (H, W, 3)


@pytest.mark.parametrize("ext", ["png", "jpg", "bmp", "gif", "tif", "webp"])
def test_every_format_reads_as_uint8_hwc(tmp_path, ext):
    rgb = gradient_rgb()
    path = tmp_path / f"img.{ext}"
    Image.fromarray(rgb).save(path, **({"quality": 95} if ext in ("jpg", "webp") else {}))
    a = load_image(path)
    assert a.dtype == np.uint8 and a.shape == (12, 20, 3)
    lossy = ext in ("jpg", "webp", "gif")  # gif: 256-colour palette
    assert np.abs(a.astype(int) - rgb).mean() < (12 if lossy else 0.5)


def test_gray_stays_one_channel_and_rgb_converts_with_pillow_luma(tmp_path):
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png").shape == (6, 10, 1)
    three = load_image(tmp_path / "g.png", channels=3)
    assert three.shape == (6, 10, 3) and (three == gray[..., None]).all()

    rgb = gradient_rgb()
    Image.fromarray(rgb).save(tmp_path / "c.png")
    one = load_image(tmp_path / "c.png", channels=1)
    expected = np.asarray(Image.fromarray(rgb).convert("L"))
    assert one.shape == (12, 20, 1) and (one[..., 0] == expected).all()


def test_resize_takes_height_then_width(tmp_path):
    Image.fromarray(gradient_rgb(12, 20)).save(tmp_path / "c.png")
    a = load_image(tmp_path / "c.png", size=(30, 8))
    assert a.shape == (30, 8, 3)
    assert load_image(tmp_path / "c.png", channels=1, size=5).shape == (5, 5, 1)


def test_transparent_pixels_become_white_not_their_hidden_colour(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # hidden red under full transparency
    rgba[:2, :, 3] = 255  # top half opaque red
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    a = load_image(tmp_path / "t.png")
    assert a.shape == (4, 4, 3)
    assert (a[:2] == [255, 0, 0]).all() and (a[2:] == 255).all()


def test_palette_images(tmp_path):
    colour = Image.fromarray(gradient_rgb()).convert("P", palette=Image.ADAPTIVE, colors=16)
    colour.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == (12, 20, 3)
    gray = Image.fromarray(np.full((5, 5), 77, np.uint8), "L").convert("P")
    gray.save(tmp_path / "pg.gif")
    a = load_image(tmp_path / "pg.gif")
    assert a.shape == (5, 5, 1) and (a == 77).all()


def test_gif_gives_its_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((6, 6), v, np.uint8), "L") for v in (10, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    a = load_image(tmp_path / "anim.gif")
    assert (a == 10).all()


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(gradient_rgb(12, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    assert load_image(tmp_path / "phone.jpg").shape == (20, 12, 3)


def test_16_bit_gray_is_scaled_not_clipped(tmp_path):
    a16 = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "deep.png")
    a = load_image(tmp_path / "deep.png")
    assert a.shape == (1, 3, 1)
    assert a[0, :, 0].tolist() == [0, 128, 255]


def test_not_an_image_names_the_file(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("hello, not a picture")
    with pytest.raises(CnnkitError, match="notes.png") as e:
        load_image(bad)
    assert "\n" not in str(e.value)


def test_truncated_image_names_the_file(tmp_path):
    Image.fromarray(gradient_rgb(64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(CnnkitError, match="cut.png"):
        load_image(tmp_path / "cut.png")


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(CnnkitError, match="nothere.png.*does not exist"):
        load_image(tmp_path / "nothere.png")
    Image.fromarray(gradient_rgb()).save(tmp_path / "c.png")
    with pytest.raises(CnnkitError, match="channels 2"):
        load_image(tmp_path / "c.png", channels=2)
    with pytest.raises(CnnkitError, match="size"):
        load_image(tmp_path / "c.png", size=(0, 5))


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, recwarn):
    path = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(path)  # 100 million pixels in a file of ~12 kB
    assert path.stat().st_size < 100_000
    with pytest.raises(CnnkitError, match=r"^image '.*bomb.png' is 10000×10000 = 100,000,000 "
                                          r"pixels; valid: at most 89,478,485 pixels$"):
        load_image(path)
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]


def test_an_image_past_pillows_own_limit_is_the_same_line(tmp_path):
    path = tmp_path / "bigger.png"
    Image.new("1", (20_000, 10_000)).save(path)  # 200 million: Pillow refuses it at open
    with pytest.raises(CnnkitError, match=r"^image '.*bigger.png' has more than 178,956,970 "
                                          r"pixels; valid: at most 89,478,485 pixels$"):
        load_image(path)


# A PostScript file under an image's name: Pillow, left to guess, reads it as EPS and runs
# Ghostscript on it. A stand-in `gs` on PATH records each time it is started.
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"
       b"newpath 0 0 moveto 8 8 lineto stroke\nshowpage\n")
NO_GHOSTSCRIPT = """
import sys
from cnnkit.cli import main
from cnnkit.data import load_dataset
folder, model, photo, out = sys.argv[1:]
codes = [main(["predict", model, photo]), main(["inspect", model, photo, "--out", out])]
ds = load_dataset("folder:" + folder)
print("codes", codes, "skipped", sorted(ds.info["skipped"]), "images", len(ds.x_train))
assert main(["data", "show", "folder:" + folder, "--out", out + "/grid.png"]) == 0
"""


def test_a_postscript_file_named_like_an_image_never_starts_ghostscript(tmp_path):
    import os
    import subprocess
    import sys

    bin_dir, called = tmp_path / "bin", tmp_path / "gs-called"
    bin_dir.mkdir()
    (bin_dir / "gs").write_text(f'#!/bin/sh\necho "$@" >> "{called}"\nexit 1\n')
    (bin_dir / "gs").chmod(0o755)
    folder = tmp_path / "shapes"
    for name in ("circle", "square"):
        (folder / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(gradient_rgb(8, 8)).convert("L").save(folder / name / f"{i}.png")
    (folder / "circle" / "photo.png").write_bytes(EPS)
    model = tmp_path / "cnn.yaml"
    model.write_text("input_shape: [8, 8, 1]\nlayers:\n  - Conv2D: {filters: 2, kernel_size: 3}"
                     "\n  - Flatten: {}\n  - Dense: {units: 2, activation: softmax}\n")
    photo = folder / "circle" / "photo.png"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run([sys.executable, "-c", NO_GHOSTSCRIPT, str(folder), str(model),
                        str(photo), str(tmp_path / "out")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not called.exists(), called.read_text()  # nothing external was started
    assert "codes [2, 2] skipped ['circle/photo.png'] images 4" in r.stdout, r.stdout
    skipped = [line for line in r.stderr.splitlines() if "skipped 1 unreadable" in line]
    assert len(skipped) == 2 and all(": circle/photo.png (in " in s for s in skipped), r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("cnnkit: error:")]
    assert len(errors) == 2 and all(f"'{photo}': not an image (PNG, JPEG" in e for e in errors), \
        r.stderr
    assert "Traceback" not in r.stderr


def test_pillow_open_takes_only_the_formats_cnnkit_lists(tmp_path):
    from PIL import UnidentifiedImageError

    from cnnkit.data.images import FORMATS, IMAGE_FORMATS, pillow_open

    assert [f.upper() for f in IMAGE_FORMATS.split(", ")] == list(FORMATS)
    Image.fromarray(gradient_rgb()).save(tmp_path / "a.ppm")  # a format Pillow reads, not listed
    with pytest.raises(UnidentifiedImageError):
        pillow_open(tmp_path / "a.ppm")
    with pytest.raises(CnnkitError, match="not an image"):
        load_image(tmp_path / "a.ppm")
