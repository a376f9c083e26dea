"""What the network sees in one image: each layer's output, Grad-CAM, saliency, the filters.

    maps = feature_maps(model, "digit.png")      # {layer name: (H, W, C) array, or (D,)}
    heat, k = grad_cam(model, "digit.png")       # (H, W) in [0, 1] at the input size, class
    save_inside(model, "digit.png", "inside/")   # the pictures, one PNG each

The image is anything the input contract takes (cnnkit.model.inputs), brought to the model's
input exactly as `predict` brings it.

A layer's output is Keras's: what seed 004's `Model(inputs, [l.output for l in model.layers])`
returns, a Conv2D(activation='relu') giving post-ReLU values. It is computed by running the
built modules in *layer* order (a graph's: its own order, GraphNet.trace) rather than by
hooking the network's forward pass, because the
network runs a max-pooling before the ReLU in front of it (`Net.steps`): a hook on that pooling
would see pre-ReLU values, and one on an Activation layer in front of a pooling would see the
pooled map. Layer order is the definition itself, exact (max-pooling commutes with a
non-decreasing function), and attaches nothing to the model, so no hook can outlive a call.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cnnkit.errors import CnnkitError, one_of, out_of_range
from cnnkit.layers import AveragePooling2D, MaxPooling2D
from cnnkit.model.inputs import network_input, to_pixels
from cnnkit.model.outputs import class_count, predicted_class
from cnnkit.model.predict import evaluating


# -- layer outputs ------------------------------------------------------------------------------
def feature_maps(model, image, layers=None) -> dict[str, np.ndarray]:
    """{layer name: its output for `image`}: (H, W, C) for feature maps, (D,) for vectors, in
    the model's layer order (or the order of `layers`, one name or a list, if given)."""
    names = _layer_names(model, layers)
    x = _network_input(model, image)
    with evaluating(model.net), torch.inference_mode():
        outs, _ = layer_outputs(model, x, keep=set(names))
    return {name: _keras_array(outs[name]) for name in names}


CAM_METHODS = ("gradcam", "hirescam")


def grad_cam(model, image, class_index: int | None = None,
             layer: str | None = None, method: str = "gradcam") -> tuple[np.ndarray, int]:
    """(heatmap (H, W) in [0, 1] at the model's input size, class): Grad-CAM (Selvaraju et al.
    2017) of the class's score, its logit, at `layer` (default: the last Conv2D).

    Each channel of the layer's output is weighted by the spatial mean of the score's gradient
    there; the ReLU of the weighted sum keeps what speaks *for* the class. Bilinear up to the
    input size, then divided by its maximum (all zeros where nothing does). `class_index`
    defaults to the predicted class.

    method="hirescam" (Draelos & Carin 2020) weights each position by its own gradient instead
    of the channel's mean: behind a Flatten head, whose weights differ by position, the means
    often cancel and Grad-CAM is 0 everywhere, while HiResCAM still shows what the score used.
    Behind global average pooling both are the same map."""
    if method not in CAM_METHODS:
        raise one_of("CAM method", method, CAM_METHODS)
    name = _conv_names(model, "Grad-CAM")[-1] if layer is None else _feature_layer(model, layer)
    k = _check_class(model, class_index)
    with evaluating(model.net), torch.inference_mode(False), torch.enable_grad():
        x = _network_input(model, image)
        outs, logits = layer_outputs(model, x, keep={name}, grad_at=name)
        k = _predicted(model, logits) if k is None else k
        fmap = outs[name]  # (1, C, h, w), a leaf: the graph starts at this layer
        (grads,) = torch.autograd.grad(_score(logits, k), fmap)
    weights = grads.mean(dim=(2, 3), keepdim=True) if method == "gradcam" else grads
    cam = torch.relu((weights * fmap.detach()).sum(dim=1, keepdim=True))  # (1, 1, h, w)
    h, w, _ = model.input_shape
    cam = F.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)
    return _unit(cam[0, 0]), k


def saliency(model, image, class_index: int | None = None) -> np.ndarray:
    """(H, W) in [0, 1]: the largest |d score / d pixel| over the channels (Simonyan et al.
    2013), divided by its maximum. The score is the class's logit (default: predicted class)."""
    k = _check_class(model, class_index)
    with evaluating(model.net), torch.inference_mode(False), torch.enable_grad():
        x = _network_input(model, image).requires_grad_()  # (1, C, H, W)
        _, logits = layer_outputs(model, x, keep=set())
        k = _predicted(model, logits) if k is None else k
        (grads,) = torch.autograd.grad(_score(logits, k), x)  # (1, C, H, W)
    pre = model.preprocessing
    if pre.get("normalize") == "standardize" and pre.get("std") is not None:
        # the gradient per pixel, not per standardized value: channels compare fairly
        grads = grads / torch.as_tensor(pre["std"], dtype=grads.dtype,
                                        device=grads.device).view(1, -1, 1, 1)
    return _unit(grads.abs().amax(dim=1)[0])


def first_layer_filters(model) -> np.ndarray:
    """The first Conv2D's kernels in Keras layout (kh, kw, in, out), as get_weights() has them."""
    from cnnkit.model.saving import keras_weights

    return keras_weights(model.layer_module(_conv_names(model, "first_layer_filters")[0]))[0]


# -- the pictures -------------------------------------------------------------------------------
def save_inside(model, image, out_dir, layers=None, class_index: int | None = None) -> list[Path]:
    """Write what the network sees in `image` to `out_dir`; returns the files, in order:

    - feature_maps_<layer>.png: each Conv2D and pooling layer's output (or those in `layers`),
      one tile per channel on one colour scale;
    - filters_<layer>.png: the first Conv2D's kernels (in colour for RGB input);
    - gradcam_class<k>.png: Grad-CAM over the image for the predicted class, and for
      `class_index` if given;
    - saliency_class<k>.png: the gradient saliency of the predicted class.

    Everything is computed and checked before the first file is written, so a bad layer name
    or class writes nothing."""
    from cnnkit.look import plots

    pixels = _one_image(model, image)
    conv = _conv_names(model, "inspect")
    names = _pictured_layers(model) if layers is None else _layer_names(model, layers)
    _check_class(model, class_index)
    maps = feature_maps(model, pixels, names)
    probs = model.predict(pixels)[0]  # what `cnnkit predict` says about this image
    pred = int(probs.argmax())
    classes = [pred] + ([class_index] if class_index is not None and class_index != pred else [])
    cams = {k: grad_cam(model, pixels, k, conv[-1])[0] for k in classes}
    hires = grad_cam(model, pixels, pred, conv[-1], method="hirescam")[0]
    sal = saliency(model, pixels, pred)
    kernels = first_layer_filters(model)
    class_names = model.class_names or [str(i) for i in range(len(probs))]
    image_np = pixels[0].numpy()

    out, files, part = Path(out_dir), [], _file_parts(model)
    for name in names:
        files.append(plots.plot_feature_maps(maps[name], out / f"feature_maps_{part[name]}.png",
                                             title=f"{name} ({model.get_layer(name).type})"))
    files.append(plots.plot_filters(kernels, out / f"filters_{part[conv[0]]}.png",
                                    title=f"{conv[0]} filters"))
    for k, heat in cams.items():
        what = "predicted" if k == pred else "asked for"
        # All 0 is an answer, not a failure: the channels, weighted by their mean gradients,
        # sum to <= 0 everywhere. Common behind a Flatten head, whose weights differ by
        # position, so their means cancel; the picture says so rather than look broken.
        zero = "" if heat.max() > 0 else (f"\n0 everywhere: no position of {conv[-1]} speaks "
                                          "for this class (weighted channels sum to <= 0)")
        files.append(plots.plot_heatmap(
            image_np, heat, out / f"gradcam_class{k}.png", label="Grad-CAM",
            title=f"Grad-CAM at {conv[-1]} for class {k} '{class_names[k]}' ({what}, "
                  f"p = {probs[k]:.3f}){zero}"))
    files.append(plots.plot_heatmap(
        image_np, hires, out / f"hirescam_class{pred}.png", label="HiResCAM",
        title=f"HiResCAM at {conv[-1]} for class {pred} '{class_names[pred]}' (predicted; "
              "each position weighted by its own gradient)"))
    files.append(plots.plot_heatmap(
        image_np, sal, out / f"saliency_class{pred}.png", label="saliency", smooth=False,
        title=f"gradient saliency for class {pred} '{class_names[pred]}' (predicted, "
              f"p = {probs[pred]:.3f})"))
    return files


# -- the forward pass, layer by layer -----------------------------------------------------------
def layer_outputs(model, x, keep: set, grad_at: str | None = None):
    """({name: Keras output, (N, C, H, W) or (N, D)} for the layers in `keep`, logits
    (N, units)); Keras's predict(layers=...) runs it too.

    At `grad_at` the output is detached into a leaf that requires grad, so gradients reach it
    even where the layers before it are frozen, and nothing before it is kept for backward."""
    net = model.net
    names = model.layer_names()
    if hasattr(net, "trace"):  # a graph walks its own order (cnnkit.layers.graphnet.GraphNet.trace)
        outs, x = net.trace((x,), keep, grad_at)
    else:
        outs = {}
        for name in names:
            x = net.layers[name](x)
            if name in net.activations:  # the activation fused into a Conv2D or Dense
                x = net.activations[name](x)
            if name == grad_at:
                x = x.detach().requires_grad_()
            if name in keep:
                outs[name] = x
    if names and names[-1] in keep:
        outs[names[-1]] = net.outputs(x)  # the softmax/sigmoid the network split off
    return outs, x


def _one_image(model, image) -> torch.Tensor:
    pixels, _ = to_pixels(image, model._require_input())  # uint8 (N, H, W, C)
    if len(pixels) != 1:
        raise CnnkitError(f"one image at a time; received a batch of {len(pixels)} images")
    return pixels


def _network_input(model, image) -> torch.Tensor:
    device = next(model.net.parameters(), torch.empty(0)).device  # where training left it
    return network_input(model, _one_image(model, image)).to(device)  # (1, C, H, W)


def _keras_array(t: torch.Tensor) -> np.ndarray:
    t = t[0].detach().float().cpu()
    return (t.permute(1, 2, 0) if t.dim() == 3 else t).contiguous().numpy()  # (H, W, C) / (D,)


# -- classes and scores -------------------------------------------------------------------------
def _check_class(model, class_index) -> int | None:
    model.check_classifier()
    if class_index is None:
        return None
    k = class_count(model.output_shape[0])
    if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)) \
            or not 0 <= class_index < k:
        raise out_of_range("class_index", class_index, f"a class from 0 to {k - 1}")
    return int(class_index)


def _predicted(model, logits) -> int:
    return int(predicted_class(logits.detach(), model.net.output_activation)[0])


def _score(logits, k: int) -> torch.Tensor:
    """Class k's logit. One sigmoid unit z stands for two classes: P(1) = σ(z), P(0) = σ(-z)."""
    if logits.shape[1] == 1:
        return logits[0, 0] if k == 1 else -logits[0, 0]
    return logits[0, k]


def _unit(t: torch.Tensor) -> np.ndarray:
    t = t.detach().float().cpu()
    top = float(t.max())
    return (t / top).clamp_(0, 1).numpy() if top > 0 else torch.zeros_like(t).numpy()


# -- which layers -------------------------------------------------------------------------------
def _layer_names(model, layers) -> list[str]:
    names = model.layer_names()
    if layers is None:
        return names
    wanted = [layers] if isinstance(layers, str) else list(layers)
    for name in wanted:
        if name not in names:
            raise one_of("layer name", name, names)
    return list(dict.fromkeys(wanted))  # a name asked twice is drawn once


def is_convolution(layer) -> bool:
    """Conv2D and its kin (DepthwiseConv2D, SeparableConv2D, a user's own ...Conv2D): the
    layers whose outputs Grad-CAM weighs and whose feature maps are pictured."""
    return layer.type.endswith("Conv2D")


def conv_layer_names(model) -> list[str]:
    """The convolutions' names in the model's order (a graph's: a topological one), so the
    last is the one nearest the output: Grad-CAM's default layer, here and in the server."""
    return [info.name for info in model.layer_infos() if is_convolution(info.layer)]


def _conv_names(model, what: str) -> list[str]:
    names = conv_layer_names(model)
    if not names:
        types = ", ".join(layer.type for layer in model.layers)
        raise CnnkitError(f"{what} needs a convolutional model, and this one has no Conv2D "
                          f"layer ({types}); valid: a model with at least one Conv2D")
    return names


def _feature_layer(model, name: str) -> str:
    """`name`, if that layer outputs feature maps (H, W, C): Grad-CAM weighs their channels."""
    infos = {info.name: info for info in model.layer_infos()}
    if name not in infos:
        raise one_of("layer name", name, list(infos))
    if len(infos[name].output_shape) != 3:
        valid = [n for n, info in infos.items() if len(info.output_shape) == 3]
        raise CnnkitError(f"layer {name!r} outputs {infos[name].output_shape}, not feature maps "
                          f"(H, W, C), so Grad-CAM cannot use it; valid: {', '.join(valid)}")
    return name


def _pictured_layers(model) -> list[str]:
    return [info.name for info in model.layer_infos()
            if is_convolution(info.layer)
            or isinstance(info.layer, (MaxPooling2D, AveragePooling2D))]


def _file_parts(model) -> dict[str, str]:
    """Each layer's name as part of a file name: names may hold '/', spaces, ...; two that
    come out the same get their layer's index, so no picture overwrites another."""
    parts: dict[str, str] = {}
    for i, name in enumerate(model.layer_names()):
        part = re.sub(r"[^A-Za-z0-9_-]+", "-", name)
        parts[name] = part if part not in parts.values() else f"{part}-{i}"
    return parts
