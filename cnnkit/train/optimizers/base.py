"""The optimizer registry, and what every optimizer shares.

An optimizer is one class registered under one name (`@register`): its Keras arguments and
defaults (the constructor), their checks (at construction, naming the bad value) and its update
rule (`update`). The same class is `cnnkit.keras.optimizers.SGD`, `optimizer="sgd"` in
`cnnkit train`, RunSpec and `compile`, so a name means one update rule everywhere.

`build(params)` gives what the trainer steps: torch.optim's interface (`param_groups`, `state`,
`step`, `zero_grad`, `state_dict`) without torch.optim, whose first step imports
`torch._dynamo` (about 3 s on a 2-core machine). Every step goes in Keras 3's order: clip the
gradients (`clipnorm` each tensor's norm, `global_clipnorm` all of them together, `clipvalue`
each value), decay the weights apart from the gradient (w -= lr·wd·w, Keras's rule for every
optimizer), then the optimizer's own update.

No torch at import: cnnkit.train.config reads the names and checks, and the CLI prints its help
without importing torch.
"""
from __future__ import annotations

import math

from cnnkit.errors import CnnkitError, one_of, out_of_range, shown

REGISTRY: dict[str, type] = {}  # name -> optimizer class, in the order the modules register
COMMON = ("learning_rate", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue")


def register(cls):
    """Class decorator: `optimizer=cls.name` means this class everywhere in cnnkit."""
    REGISTRY[cls.name] = cls
    return cls


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def optimizer_name(name):
    """The registry's name for an optimizer in any case (`Adam`, `RMSprop`, `SGD`), as Keras's
    `optimizers.get` takes it; any other value as it is, for the registry's check to name."""
    return name.lower() if isinstance(name, str) and name.lower() in REGISTRY else name


def optimizer_class(name: str) -> type:
    if name not in REGISTRY:
        raise one_of("optimizer", name, names())
    return REGISTRY[name]


def takes(argument: str) -> list[str]:
    """The optimizers that take `argument` ("momentum": sgd, rmsprop)."""
    return [n for n, c in REGISTRY.items() if argument in c.options]


def create(name: str, **settings) -> "Optimizer":
    """The optimizer `name` with `settings` by Keras's argument names; None means the
    optimizer's own default (so a caller passes what it has, as timm's create_model does)."""
    return optimizer_class(name)(**{k: v for k, v in settings.items() if v is not None})


def number(name: str, value, low: float = 0.0, high: float = math.inf, strict: bool = True):
    """`value` as a float, or an error naming it: low < value (<= with strict=False) < high."""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and (value > low if strict else value >= low) and value < high)
    if not ok:
        valid = f"a number {'>' if strict else '>='} {low:g}"
        raise out_of_range(name, value, valid + (f" and < {high:g}" if high < math.inf else ""))
    return float(value)


def flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise out_of_range(name, value, "True or False")
    return value


def _listed(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


class Optimizer:
    """Keras's arguments common to every optimizer; subclasses add theirs (`options`), their
    per-parameter state (`slots`) and their rule (`update`)."""

    name = "optimizer"
    options: tuple[str, ...] = ()  # the optimizer's own arguments, as Keras names them
    decays_itself = False  # True: `update` applies the weight decay (Keras's rule) itself

    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None,
                 global_clipnorm=None, clipvalue=None, **unknown):
        if unknown:
            self._refuse(*next(iter(unknown.items())))
        self.learning_rate = number("learning_rate", learning_rate)
        self.weight_decay = None if weight_decay is None else number(
            "weight_decay", weight_decay, strict=False)
        clips = {"clipnorm": clipnorm, "global_clipnorm": global_clipnorm, "clipvalue": clipvalue}
        for key, value in clips.items():
            setattr(self, key, None if value is None else number(key, value))
        if sum(v is not None for v in clips.values()) > 1:
            raise CnnkitError(f"{type(self).__name__}: set one of clipnorm, global_clipnorm and "
                              "clipvalue, not several")
        self.torch = None  # the Stepper, once built

    def _refuse(self, key, value):
        cls = type(self).__name__
        if key == "lr":
            raise CnnkitError(f"{cls}: unknown argument lr={shown(value)}; Keras 3 calls it "
                              "learning_rate=")
        takers = takes(key)
        if takers:  # an argument of other optimizers: say which
            raise CnnkitError(f"{key} applies to {_listed(takers)}, not {self.name}")
        raise CnnkitError(f"{cls}: unknown argument {key}={shown(value)}; valid: "
                          f"{', '.join(COMMON + self.options)}")

    def get_config(self) -> dict:
        """Every setting by Keras's names: `create(config['name'], **rest)` rebuilds it."""
        return {"name": self.name, **{k: getattr(self, k) for k in COMMON + self.options}}

    def settings(self) -> dict:
        """The settings that differ from this optimizer's defaults (what compile records)."""
        default = type(self)().get_config()
        return {k: v for k, v in self.get_config().items() if k != "name" and v != default[k]}

    def train_options(self) -> dict:
        """This optimizer as TrainConfig's fields: what `compile` records, every setting that
        differs from the defaults (TrainConfig's lr, momentum, nesterov and weight_decay, the
        rest in `optimizer_options`)."""
        kept = self.settings()
        fields = {"learning_rate": "lr", "momentum": "momentum", "nesterov": "nesterov",
                  "weight_decay": "weight_decay"}
        options = {"optimizer": self.name}
        options.update({fields[k]: kept.pop(k) for k in list(kept) if k in fields})
        if "weight_decay" in options and options["weight_decay"] is None:
            options["weight_decay"] = 0.0  # AdamW(weight_decay=None): none, not the default
        return {**options, "optimizer_options": kept} if kept else options

    def build(self, params) -> "Stepper":
        """The steppable optimizer for `params`, made once: an object trains one model."""
        params = list(params)
        if self.torch is None:
            self.torch, self._params = Stepper(params, self), {id(p) for p in params}
        elif {id(p) for p in params} != self._params:
            raise CnnkitError(f"this {type(self).__name__} already trains another model; give "
                              f"each model its own optimizer (or a name, '{self.name}')")
        return self.torch

    def moments(self, beta_1, beta_2, epsilon) -> None:
        """The Adam family's arguments, checked: decay rates beta_1 and beta_2 in [0, 1),
        epsilon > 0."""
        self.beta_1 = number("beta_1", beta_1, 0.0, 1.0, strict=False)
        self.beta_2 = number("beta_2", beta_2, 0.0, 1.0, strict=False)
        self.epsilon = number("epsilon", epsilon)

    def slots(self, group: dict) -> dict:
        """{state name: initial value} of the tensors kept per parameter."""
        return {}

    def update(self, group: dict, params: list, grads: list, states: list) -> None:
        raise NotImplementedError

    def upgrade(self, state: dict, group: dict) -> None:
        """Bring one parameter's state saved by an older cnnkit to this rule's meaning."""

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


class Stepper:
    """torch.optim's interface over one Optimizer: one parameter group holding every setting
    (schedules change `lr` there), per-parameter state keyed by the parameter, and
    torch.optim's `state_dict` layout, so states saved by earlier versions still load."""

    def __init__(self, params, spec: Optimizer):
        self.spec = spec
        settings = spec.get_config()
        del settings["name"], settings["learning_rate"]  # the group's "lr", as schedules expect
        self.defaults = {"lr": spec.learning_rate, **settings}
        self.param_groups = [{"params": list(params), **self.defaults}]
        self.state: dict = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    def step(self) -> None:
        import torch

        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        with torch.no_grad():
            grads = _clipped(group, [p.grad for p in params])
            if group["weight_decay"] and not self.spec.decays_itself:
                torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
            states = []
            for p in params:
                s = self.state.get(p)
                if s is None:
                    s = self.state[p] = {"step": p.new_zeros((), dtype=torch.float32)}
                    s.update({k: torch.full_like(p, v) for k, v in self.spec.slots(group).items()})
                states.append(s)
            torch._foreach_add_([s["step"] for s in states], 1)
            self.spec.update(group, params, grads, states)

    def state_dict(self) -> dict:
        group = self.param_groups[0]
        index = {id(p): i for i, p in enumerate(group["params"])}
        state = {index[id(p)]: dict(s) for p, s in self.state.items()}
        saved = {k: v for k, v in group.items() if k != "params"}
        return {"state": state, "param_groups": [{**saved, "params": list(range(len(index)))}]}

    def load_state_dict(self, state_dict: dict) -> None:
        import torch

        group = self.param_groups[0]
        saved = state_dict["param_groups"]
        if len(saved) != 1 or len(saved[0]["params"]) != len(group["params"]):
            raise ValueError("the saved optimizer state is for a different set of parameters")
        by_index = dict(zip(saved[0]["params"], group["params"]))
        # the rates (lr, initial_lr) as saved; the parameters stay ours
        group.update({k: v for k, v in saved[0].items() if k != "params"})
        self.state = {}
        for i, values in state_dict["state"].items():
            p = by_index[int(i)]
            s = self.state[p] = {
                k: (v.to(device=p.device) if k == "step" else v.to(device=p.device, dtype=p.dtype))
                if isinstance(v, torch.Tensor) else v for k, v in values.items()}
            self.spec.upgrade(s, group)


def _clipped(group: dict, grads: list) -> list:
    """Keras's gradient clipping: each tensor to norm `clipnorm`, all together to
    `global_clipnorm`, or each value to ±`clipvalue`."""
    import torch

    if group.get("clipnorm"):
        c = group["clipnorm"]
        return [g * (c / torch.clamp(n, min=c)) for g, n in zip(grads, torch._foreach_norm(grads))]
    if group.get("global_clipnorm"):
        c = group["global_clipnorm"]
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        return torch._foreach_mul(grads, c / torch.clamp(total, min=c))
    if group.get("clipvalue"):
        v = group["clipvalue"]
        return [g.clamp(-v, v) for g in grads]
    return grads
