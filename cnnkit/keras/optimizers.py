"""Keras's optimizers as objects (`optimizers.Adam(learning_rate=1e-3)`) or names, any case
(`'adam'`, `'Adam'`, `'RMSprop'`), with Keras 3's defaults and update rules: tests/keras checks
the weights after training against real Keras, optimizer by optimizer. SGD, Adagrad and Adam
run on cnnkit's torch kernels (cnnkit.train.optimizers; Adam with Keras's epsilon placement),
RMSprop on Keras's own rule (the core RMSprop's `keras_rule`)."""
from __future__ import annotations

import math

from cnnkit.errors import CnnkitError, one_of, out_of_range
from cnnkit.errors import clipped


def _rate(name, value, low=0.0, high=math.inf, strict=True):
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and (value > low if strict else value >= low) and value < high)
    if not ok:
        bound = f"> {low}" if strict else f">= {low}"
        raise out_of_range(name, value, f"a number {bound}" + (f" and < {high}" if high < math.inf else ""))
    return float(value)


class Optimizer:
    """Holds Keras's hyper-parameters; `build(params)` makes the torch optimizer once."""

    name = "optimizer"

    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None, **kwargs):
        if "lr" in kwargs:
            raise CnnkitError(f"{type(self).__name__}: unknown argument lr={clipped(kwargs['lr'])}"
                              "; Keras 3 calls it learning_rate=")
        if kwargs:
            key = next(iter(kwargs))
            raise CnnkitError(f"{type(self).__name__}: unknown argument {key}="
                              f"{clipped(kwargs[key])}; valid: learning_rate, weight_decay, "
                              f"clipnorm, {', '.join(self._own())}")
        self.learning_rate = _rate("learning_rate", learning_rate)
        self.weight_decay = None if weight_decay is None else _rate("weight_decay", weight_decay,
                                                                    strict=False)
        self.clipnorm = None if clipnorm is None else _rate("clipnorm", clipnorm)
        self.torch = None

    def _own(self):
        return ()

    def build(self, params):
        params = list(params)
        if self.torch is None:
            self.torch, self._params = self._make(params), {id(p) for p in params}
        elif {id(p) for p in params} != self._params:
            raise CnnkitError(f"this {type(self).__name__} already trains another model; give "
                              f"each model its own optimizer (or a name, '{self.name}')")
        return self.torch

    def get_config(self) -> dict:
        return {"name": self.name, "learning_rate": self.learning_rate}

    def __repr__(self):
        return f"{type(self).__name__}(learning_rate={self.learning_rate})"


class Adam(Optimizer):
    name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _rate("beta_1", beta_1, 0, 1, strict=False)
        self.beta_2 = _rate("beta_2", beta_2, 0, 1, strict=False)
        self.epsilon = _rate("epsilon", epsilon)
        if amsgrad:
            raise CnnkitError("Adam: amsgrad=True is not supported; valid: False")

    def _own(self):
        return ("beta_1", "beta_2", "epsilon", "amsgrad")

    def _make(self, params):
        from cnnkit.train import optimizers as opt

        # Keras 3 decays weights decoupled from the gradient (AdamW's rule) for every optimizer
        cls = _keras_adam(opt.AdamW if self.weight_decay else opt.Adam)
        return cls(params, lr=self.learning_rate, betas=(self.beta_1, self.beta_2),
                   eps=self.epsilon, weight_decay=self.weight_decay or 0.0)


class AdamW(Adam):
    name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, **kwargs):
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


class RMSprop(Optimizer):
    name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = _rate("rho", rho, 0, 1)
        self.momentum = _rate("momentum", momentum, 0, 1, strict=False)
        self.epsilon = _rate("epsilon", epsilon)
        if centered:
            raise CnnkitError("RMSprop: centered=True is not supported; valid: False")
        if self.weight_decay:
            raise CnnkitError("RMSprop: weight_decay is supported with Adam and AdamW only")

    def _own(self):
        return ("rho", "momentum", "epsilon", "centered")

    def _make(self, params):
        return KerasRMSprop(params, self.learning_rate, self.rho, self.epsilon, self.momentum)


class SGD(Optimizer):
    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = _rate("momentum", momentum, 0, 1, strict=False)
        self.nesterov = bool(nesterov)
        if self.nesterov and not self.momentum:
            raise CnnkitError("SGD: nesterov=True needs momentum > 0")
        if self.weight_decay:
            raise CnnkitError("SGD: weight_decay is supported with Adam and AdamW only")

    def _own(self):
        return ("momentum", "nesterov")

    def _make(self, params):
        from cnnkit.train import optimizers as opt

        return opt.SGD(params, lr=self.learning_rate, momentum=self.momentum,
                       nesterov=self.nesterov)


class Adagrad(Optimizer):
    name = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = _rate("initial_accumulator_value",
                                               initial_accumulator_value, strict=False)
        self.epsilon = _rate("epsilon", epsilon)
        if self.weight_decay:
            raise CnnkitError("Adagrad: weight_decay is supported with Adam and AdamW only")

    def _own(self):
        return ("initial_accumulator_value", "epsilon")

    def _make(self, params):
        from cnnkit.train import optimizers as opt

        return opt.Adagrad(params, lr=self.learning_rate, eps=self.epsilon,
                           initial_accumulator_value=self.initial_accumulator_value)


def _keras_adam(base):
    """torch's fused Adam kernel with Keras's epsilon. Keras divides by sqrt(v) + eps after
    folding the bias corrections into the rate; torch adds eps to sqrt(v / (1 - beta_2^t)).
    They agree when torch's eps is eps / sqrt(1 - beta_2^t), set before every step."""
    import math

    class KerasAdam(base):
        def __init__(self, *args, eps, **kwargs):
            super().__init__(*args, eps=eps, **kwargs)
            self.keras_epsilon, self.steps = eps, 0

        def step(self):
            self.steps += 1
            group = self.param_groups[0]
            group["eps"] = self.keras_epsilon / math.sqrt(1 - group["betas"][1] ** self.steps)
            super().step()

    return KerasAdam


def KerasRMSprop(params, lr, rho, eps, momentum):  # noqa: N802  (a class before)
    """Keras 3's RMSprop: v = rho·v + (1 - rho)·g², w -= lr·g / sqrt(v + eps) (torch's adds
    eps after the square root, which takes far larger steps where gradients are tiny): cnnkit's
    core RMSprop on its Keras rule, the one `optimizer="rmsprop"` uses everywhere in cnnkit."""
    from cnnkit.train.optimizers import RMSprop as Core

    return Core(params, lr=lr, alpha=rho, eps=eps, momentum=momentum, keras_rule=True)


BY_NAME = {"adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "sgd": SGD, "adagrad": Adagrad}


def get(identifier) -> Optimizer:
    """An optimizer object from a name (any case) or an optimizer object."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in BY_NAME:
        return BY_NAME[identifier.lower()]()
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    raise one_of("optimizer", identifier, [c.__name__ for c in BY_NAME.values()]
                 + ["or their names in any case ('adam')"])
