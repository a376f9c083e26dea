"""cnnkit serve's page in Korean: Chromium with a Korean locale (navigator.language "ko-KR")
gets the page's words in Korean and the built-in datasets' class names in Korean beside the
English ones; an English browser keeps English."""
import pytest


def open_page(browser, url: str, locale: str):
    context = browser.new_context(locale=locale, viewport={"width": 1200, "height": 1000})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, wait_until="load")
    page.wait_for_selector("body[data-ready=true]")
    return context, page, errors


@pytest.mark.parametrize("locale, words", [
    ("ko-KR", {"html": "ko", "#draw h2": "그리기", "#clear": "지우기", "#camera": "카메라",
               "#results h2": "모델이 본 것", "top": "7 · 칠", "note": "모델이 분류한 바로 그 픽셀",
               "facts": "테스트 정확도", "dt": "이름", "cam": "Grad-CAM, 클래스 7 · 칠"}),
    ("en-US", {"html": "en", "#draw h2": "Draw", "#clear": "Clear", "#camera": "Camera",
               "#results h2": "What the model saw", "top": "7",
               "note": "exactly the pixels the model classified", "facts": "test accuracy",
               "dt": "name", "cam": "Grad-CAM at "}),
])
def test_the_serve_page_speaks_the_browsers_language(browser, digit_server, digit_run, tmp_path,
                                                     locale, words):
    context, page, errors = open_page(browser, digit_server.url + "/", locale)
    path, _ = digit_run.test_image(tmp_path, 7)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("body[data-idle=true] #cam figcaption", state="attached")
    seen = {"html": page.get_attribute("html", "lang"),
            **{s: page.inner_text(s) for s in ("#draw h2", "#clear", "#camera", "#results h2")},
            "top": page.inner_text("#bars .bar.top .label"),
            "klass": page.get_attribute("#bars .bar.top", "data-class"),
            "note": page.inner_text("#input-note"), "facts": page.inner_text("#facts"),
            "dt": page.inner_text("#card-facts dt"), "cam": page.inner_text("#cam figcaption")}
    context.close()

    for key in ("html", "#draw h2", "#clear", "#camera", "#results h2", "top", "dt"):
        assert seen[key] == words[key], (key, seen[key])
    assert words["note"] in seen["note"] and words["facts"] in seen["facts"]
    assert words["cam"] in seen["cam"]
    assert seen["klass"] == "7"  # the API's class name stays the English one
    assert errors == []


def test_korean_labels_go_to_the_built_in_datasets_classes_only(browser, digit_server):
    context, page, errors = open_page(browser, digit_server.url + "/", "ko-KR")
    named = page.evaluate("""() => {
        const fashion = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"];
        const cifar = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                       "ship", "truck"];
        const out = [];
        for (const classes of [fashion, cifar, ["cat", "dog"]]) {
            useClasses(classes);
            out.push(classes.map(className));
        }
        return out;
    }""")
    context.close()

    fashion, cifar, other = named
    assert fashion[0] == "T-shirt/top · 티셔츠/탑" and fashion[9] == "Ankle boot · 앵클부츠"
    assert cifar[3] == "cat · 고양이" and cifar[0] == "airplane · 비행기"
    assert other == ["cat", "dog"]  # not a built-in dataset's classes: no guessing
    assert errors == []
