"""The parts of a run's report that describe the model, for a run of your own nn.Module
(`cnnkit.fit(CNN(), ..., out=...)`).

cnnkit's own reports draw from its layer descriptions (summary table, diagram, Grad-CAM at
the last Conv2D layer spec). A user's module has none, so these parts walk the module instead:
its printed structure (what `print(model)` shows a PyTorch user) and parameter counts, the
first `nn.Conv2d`'s kernels, and the outputs of its first convolutions and poolings for one
test image (forward hooks on the module's own submodules). What needs a layer description
(the diagram, Grad-CAM) is left out with a one-line reason.
"""
from __future__ import annotations

from html import escape

import numpy as np

from cnnkit.look.html import MAP_LAYERS  # as for a cnnkit model: the first convolutions, poolings
from cnnkit.look.html_parts import note, table

NO_DIAGRAM = ("no layer diagram: the model is your own nn.Module, whose forward() cnnkit does "
              "not describe; its structure is printed above")
NO_CAM = ("no Grad-CAM: it needs a cnnkit layer description to place it after the last "
          "convolution; your own nn.Module has none")


def mapped_modules(module) -> list[tuple[str, object]]:
    """(name, submodule) of the module's first convolutions and poolings, in definition
    order (the order `named_modules` walks, which is forward order for the seeds' classes)."""
    from torch import nn

    kinds = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
    return [(n, m) for n, m in module.named_modules() if isinstance(m, kinds)][:MAP_LAYERS]


def first_conv_kernels(module):
    """(out, in, kh, kw) kernels of the module's first nn.Conv2d, or None without one."""
    from torch import nn

    conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return None if conv is None else conv.weight.detach().float().cpu().numpy()


def module_feature_maps(model, image) -> dict[str, np.ndarray]:
    """{submodule name: (H, W, C) output} for one uint8 (H, W, C) image, by forward hooks on
    mapped_modules; the image reaches the module exactly as in training (model.preprocessing)."""
    import torch

    from cnnkit.model.inputs import network_input

    maps, hooks = {}, []
    for name, sub in mapped_modules(model.module):
        def keep(_m, _inp, out, name=name):
            if isinstance(out, torch.Tensor) and out.dim() == 4 and name not in maps:
                maps[name] = out[0].detach().float().permute(1, 2, 0).cpu().numpy()
        hooks.append(sub.register_forward_hook(keep))
    try:
        model.net.eval()
        with torch.inference_mode():
            x = network_input(model, torch.as_tensor(np.ascontiguousarray(image))[None])
            model.net(x.to(next(model.net.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return maps


def module_text(model) -> str:
    """A few lines for report.md: the class, counts, shapes and the module as torch prints it."""
    d = model.summary_dict()
    return (f"Your own nn.Module {d['module']}: {d['total_params']:,} parameters "
            f"({d['trainable_params']:,} trainable), input {tuple(d['input_shape'])} (H, W, C), "
            f"{d['output_shape'][0]} outputs (logits)\n\n{model.module!r}")


def module_section(model, config: dict) -> str:
    """The report's "Model" section for a user's module."""
    d = model.summary_dict()
    rows = [["class", d["module"]], ["input", f"{tuple(d['input_shape'])} (H, W, C)"],
            ["outputs", f"{d['output_shape'][0]} logits"],
            ["parameters", f"{d['total_params']:,} ({d['trainable_params']:,} trainable)"]]
    convs = [n for n, _ in mapped_modules(model.module)]
    if convs:
        rows.append(["convolutions and poolings", ", ".join(convs)])
    return ('<div class="row"><div class="side">' + table(["", ""], rows, "facts")
            + f"<h3>Structure</h3><pre>{escape(repr(model.module))}</pre></div><div>"
            + "<h3>Diagram</h3>" + note(NO_DIAGRAM) + "</div></div>")
