// The top-k bars and the one element helper, shared by `cnnkit serve`'s page and the static
// page `cnnkit export --format web` writes: both pages show a prediction the same way.
"use strict";

function el(tag, cls = "", text = null) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== null) e.textContent = text;
  return e;
}

function bar(t, top) {
  const row = el("div", "bar" + (top ? " top" : ""));
  row.dataset.class = t.class;
  const label = el("span", "label", className(t.class));
  label.title = className(t.class);
  const track = el("span", "track");
  const fill = el("span", "fill");
  fill.style.width = `${(100 * t.probability).toFixed(1)}%`;
  track.append(fill);
  row.append(label, track, el("span", "value", `${(100 * t.probability).toFixed(1)}%`));
  return row;
}

// -- the reader's language: Korean or English, from the browser (navigator.language) ---------
// Each page keeps its own small table of words ({en: {...}, ko: {...}}); a value is a string or
// a function of the numbers it shows. Static elements name their word in data-say.
const LANG = /^ko\b/i.test(navigator.language || "") ? "ko" : "en";

function say(table, key, ...args) {
  const word = (table[LANG] && key in table[LANG] ? table[LANG] : table.en)[key];
  return typeof word === "function" ? word(...args) : word;
}

function sayAll(table) {
  document.documentElement.lang = LANG;
  for (const e of document.querySelectorAll("[data-say]")) e.textContent = say(table, e.dataset.say);
}

// Korean names of the built-in datasets' classes, shown beside the English ones on a Korean
// page when the model's classes are exactly one dataset's (so "cat" from another set is left be).
const CLASSES_KO = [
  [["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],  // MNIST and scikit-learn's digits
   ["영", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"]],
  [["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot"],  // Fashion-MNIST
   ["티셔츠/탑", "바지", "풀오버", "드레스", "코트", "샌들", "셔츠", "운동화", "가방", "앵클부츠"]],
  [["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
   ["비행기", "자동차", "새", "고양이", "사슴", "개", "개구리", "말", "배", "트럭"]],  // CIFAR-10
];
let classWords = {};  // English class name -> its Korean name, for this page's model

function useClasses(classes) {
  classWords = {};
  if (LANG !== "ko") return;
  for (const [en, ko] of CLASSES_KO) {
    if (en.length === classes.length && en.every((c, i) => c === classes[i])) {
      en.forEach((c, i) => { classWords[c] = ko[i]; });
    }
  }
}

function className(c) {
  return classWords[c] ? `${c} · ${classWords[c]}` : c;
}
