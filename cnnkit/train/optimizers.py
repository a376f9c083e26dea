"""Adam, AdamW, Adagrad, SGD and RMSprop without `torch.optim`: the same update rules, the same
kernels, the same `state_dict` layout, none of its start-up cost.

Why: `torch.optim.Optimizer` imports `torch._dynamo` when it is first built and stepped (for
torch.compile support cnnkit does not use there). That import alone takes about 3 s on a 2-core
machine, a tenth of what the `fast` recipe may spend in all. The classes here call the very
kernels torch.optim uses on a CPU (`torch._fused_adam_`, `torch._fused_adamw_`,
`torch._fused_adagrad_`, and for SGD and RMSprop the same tensor operations), so a run's
numbers do not change: tests/train/test_optimizers.py checks every one against torch.optim
step by step. RMSprop also has Keras 3's rule (epsilon inside the square root), which cnnkit's
"rmsprop" uses: tests/keras/test_rmsprop_keras.py checks it against real Keras.

`state_dict()` has torch.optim's layout ({"state": {index: {...}}, "param_groups": [...]}) and
`load_state_dict` reads it, so training states saved before this module existed still resume.
"""
from __future__ import annotations

import torch


class Optimizer:
    """One parameter group; per-parameter state keyed by the parameter, as in torch.optim."""

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups = [{"params": list(params), **defaults}]
        self.state: dict[torch.Tensor, dict] = {}

    def _with_grads(self):
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        return group, params, [p.grad for p in params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    def state_dict(self) -> dict:
        groups, index, start = [], {}, 0
        for group in self.param_groups:
            ids = list(range(start, start + len(group["params"])))
            index.update({id(p): i for p, i in zip(group["params"], ids)})
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
            start += len(ids)
        state = {index[id(p)]: dict(s) for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups) or any(
                len(s["params"]) != len(g["params"]) for s, g in zip(saved_groups, self.param_groups)):
            raise ValueError("the saved optimizer state is for a different set of parameters")
        by_index = {}
        for saved, group in zip(saved_groups, self.param_groups):
            by_index.update(zip(saved["params"], group["params"]))
            # hyperparameters (lr, initial_lr, ...) as saved; the parameters stay ours
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for i, values in state_dict["state"].items():
            p = by_index[int(i)]
            self.state[p] = {k: (v.to(device=p.device) if k == "step" else
                                 v.to(device=p.device, dtype=p.dtype))
                             if isinstance(v, torch.Tensor) else v for k, v in values.items()}

    def _counted_states(self, params, names, fill: float = 0.0) -> list[dict]:
        """Each parameter's state, created on first use (a float32 `step` and a tensor shaped
        like the parameter, filled with `fill`, per name), with `step` advanced by one."""
        states = []
        for p in params:
            s = self.state.get(p)
            if s is None:
                s = self.state[p] = {"step": torch.zeros((), dtype=torch.float32)}
                s.update({name: torch.full_like(p, fill) for name in names})
            states.append(s)
        torch._foreach_add_([s["step"] for s in states], 1)
        return states


class Adam(Optimizer):
    """torch.optim.Adam(fused=True) (AdamW: decoupled weight decay, `torch._fused_adamw_`)."""

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay, "amsgrad": False,
                                  "maximize": False, "fused": True})

    @torch.no_grad()
    def step(self) -> None:
        group, params, grads = self._with_grads()
        if not params:
            return
        states = self._counted_states(params, ("exp_avg", "exp_avg_sq"))
        kernel = torch._fused_adamw_ if self.decoupled else torch._fused_adam_
        beta1, beta2 = group["betas"]
        kernel(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
               [], [s["step"] for s in states], lr=group["lr"], beta1=beta1, beta2=beta2,
               weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=False,
               maximize=False, grad_scale=None, found_inf=None)


class AdamW(Adam):
    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


class Adagrad(Optimizer):
    """torch.optim.Adagrad(fused=True)."""

    def __init__(self, params, lr=1e-2, initial_accumulator_value=0.0, eps=1e-10,
                 weight_decay=0.0):
        super().__init__(params, {"lr": lr, "lr_decay": 0.0, "weight_decay": weight_decay,
                                  "initial_accumulator_value": initial_accumulator_value,
                                  "eps": eps, "maximize": False, "fused": True})

    @torch.no_grad()
    def step(self) -> None:
        group, params, grads = self._with_grads()
        if not params:
            return
        states = self._counted_states(params, ("sum",), group["initial_accumulator_value"])
        torch._fused_adagrad_(params, grads, [s["sum"] for s in states],
                              [s["step"] for s in states], lr=group["lr"],
                              lr_decay=group["lr_decay"], weight_decay=group["weight_decay"],
                              eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)


class SGD(Optimizer):
    """torch.optim.SGD(foreach=False): plain, momentum and Nesterov momentum."""

    def __init__(self, params, lr=1e-2, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": 0.0,
                                  "nesterov": nesterov, "weight_decay": weight_decay,
                                  "maximize": False})

    @torch.no_grad()
    def step(self) -> None:
        group, params, grads = self._with_grads()
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        for p, g in zip(params, grads):
            if wd:
                g = g.add(p, alpha=wd)
            if momentum:
                s = self.state.setdefault(p, {})
                buf = s.get("momentum_buffer")
                if buf is None:
                    buf = s["momentum_buffer"] = torch.clone(g).detach()
                else:
                    buf.mul_(momentum).add_(g, alpha=1 - group["dampening"])
                g = g.add(buf, alpha=momentum) if group["nesterov"] else buf
            p.add_(g, alpha=-lr)


class RMSprop(Optimizer):
    """RMSprop, not centered, by one of two rules that differ only in where epsilon goes:
    - torch.optim.RMSprop(foreach=True) (`keras_rule=False`): w -= lr·g / (sqrt(v) + eps),
      momentum buffer b = m·b + g / (sqrt(v) + eps), w -= lr·b;
    - Keras 3's (`keras/src/optimizers/rmsprop.py`, `keras_rule=True`): w -= lr·g / sqrt(v + eps),
      momentum buffer b = m·b + lr·g / sqrt(v + eps), w -= b.
    Keras's default epsilon, 1e-7, is meant inside the root: there it floors the denominator at
    sqrt(1e-7) ≈ 3e-4, outside at 1e-7, so where gradients are tiny torch's rule with Keras's
    epsilon takes steps up to 3,000 times larger. cnnkit's "rmsprop" (make_optimizer, the seed
    004 recipe) and cnnkit.keras's RMSprop use Keras's rule; weight decay is added to the
    gradient (L2) under either."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0,
                 keras_rule: bool = False):
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps, "momentum": momentum,
                                  "weight_decay": weight_decay, "centered": False,
                                  "maximize": False, "foreach": True,
                                  "keras_rule": bool(keras_rule)})

    @torch.no_grad()
    def step(self) -> None:
        group, params, grads = self._with_grads()
        if not params:
            return
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        momentum, wd = group["momentum"], group["weight_decay"]
        names = ("square_avg", "momentum_buffer") if momentum else ("square_avg",)
        states = self._counted_states(params, names)
        if wd:
            grads = torch._foreach_add(grads, params, alpha=wd)
        square_avgs = [s["square_avg"] for s in states]
        torch._foreach_mul_(square_avgs, alpha)
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
        if group.get("keras_rule"):
            avg = torch._foreach_add(square_avgs, eps)
            torch._foreach_sqrt_(avg)
            if momentum:  # Keras keeps lr inside the buffer
                bufs = [s["momentum_buffer"] for s in states]
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_addcdiv_(bufs, grads, avg, value=lr)
                torch._foreach_sub_(params, bufs)
            else:
                torch._foreach_addcdiv_(params, grads, avg, value=-lr)
            return
        avg = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(avg, eps)
        if momentum:
            bufs = [s["momentum_buffer"] for s in states]
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_addcdiv_(bufs, grads, avg)
            torch._foreach_add_(params, bufs, alpha=-lr)
        else:
            torch._foreach_addcdiv_(params, grads, avg, value=-lr)


FROZEN_BY_FLAG = "_cnnkit_frozen_by_flag"  # ids of parameters a `trainable = False` switched off


def trained_parameters(model) -> list:
    """The parameters training may update, honouring Keras's `trainable` flag on a model's
    layers (`model.layers[0].trainable = False`) and on the model itself, for cnnkit's own
    layers as for cnnkit.keras's.

    A frozen layer's parameters get `requires_grad=False`, so no gradient is computed for them,
    the optimizer never holds them (their weights cannot move, and weight decay cannot shrink
    them) and the summary counts them as non-trainable. A layer made trainable again gets its
    gradients back; a parameter switched off by other means (`p.requires_grad_(False)`,
    `--freeze`) stays off. A user's own nn.Module has no layer list: its `requires_grad`
    flags are what counts."""
    net = model.net
    params = list(net.parameters())
    if not (hasattr(model, "layers") and hasattr(model, "layer_names")):
        return [p for p in params if p.requires_grad]
    frozen = net.__dict__.setdefault(FROZEN_BY_FLAG, set())
    whole = getattr(model, "trainable", True) is not False
    for layer, name in zip(model.layers, model.layer_names()):
        trainable = whole and getattr(layer, "trainable", True) is not False
        for p in net.layers[name].parameters():
            if not trainable and p.requires_grad:
                p.requires_grad_(False)
                frozen.add(id(p))
            elif trainable and id(p) in frozen:
                p.requires_grad_(True)
                frozen.discard(id(p))
    return [p for p in params if p.requires_grad]


def frozen_norms(model) -> list:
    """The batch-norm modules of cnnkit's own layers whose weights are all frozen (the
    `trainable` flag, or `--freeze`): Keras runs a non-trainable BatchNormalization in inference
    mode, so its moving statistics stay as trained. The trainer sets them to eval() after each
    `net.train()`. A user's own nn.Module is left to torch's rules (train mode updates the
    statistics whatever `requires_grad` says)."""
    from torch import nn

    net = model.net
    if not (hasattr(model, "layers") and hasattr(model, "layer_names")):
        return []
    norms = []
    for name in model.layer_names():
        module = net.layers[name]
        params = list(module.parameters())
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and params \
                    and not any(p.requires_grad for p in params):
                norms.append(m)
    return norms

