#!/usr/bin/python3
"""PyTorch reference fixtures for tests/nn/pytorch.test.ts.

Run:  /usr/bin/python3 scripts/make-fixtures.py [outdir]     (default outdir: tests/fixtures)

Needs torch (Debian's python3-torch 1.13 is enough) and numpy; torchvision is used for ResNet-18 when it
is importable, else an equivalent hand-written copy with torchvision's module names. Everything is
deterministic: the same torch version writes byte-identical files. The .safetensors files are written by
hand (u64 LE header length | JSON header, space-padded to 8 | raw little-endian data), so the
`safetensors` package is not needed. All tensors are stored as F32; reference values are computed in
float64 from the float32-rounded inputs, so they are more exact than the f32 engine under test.

Fixtures
--------
small_net.safetensors
    conv2d(3,4,3,padding=1) -> BatchNorm2d(4) (training mode, batch statistics, momentum 0.1) -> ReLU ->
    max_pool2d(2) -> flatten -> Linear(64, 1); input [2,3,8,8]; mean BCE-with-logits against [1, 0].
    Everything is stored, under these prefixes:
      state/<key>    the weights and the initial running statistics (keys conv.*, bn.*, fc.*)
      input/x        the input [2,3,8,8];  input/target [2,1]
      out/logits     [2,1];  out/loss []
      grad/<param>   d loss / d parameter for every parameter;  grad/x  d loss / d input
      after/bn.running_mean, after/bn.running_var   running statistics after the forward

<model>_<size>.safetensors   (meso4, mesoinception4, cnn5, resnet18 at 64; meso4 and cnn5 also at 72,
    where Keras 'same' max pooling needs -inf padding at the bottom/right)
    Weights are NOT stored. Every state-dict tensor is filled by a formula the TS test reproduces:
        value_i = float32(a + b * sin(0.37 * i + 1.1 * k + 0.0123 * i * i))
    in float64 with exactly this order of operations (JS reproduces it; only sin's last ulp can differ,
    and the float32 rounding hides that), where i is the flat (row-major) element index and k the
    tensor's index in the metadata list `fill` (= PyTorch's state_dict order without
    num_batches_tracked). The chirp term (0.0123 i^2) matters: with a pure sinusoid in i every weight
    matrix [out, in*kh*kw] would have rank 2, convolutions would be badly conditioned, and float32
    rounding would be amplified ~5x per layer (2e-2 relative at ResNet-18's logits). Defaults:
        conv / linear weight    a = 0,   b = 2 / sqrt(fan_in)    (variance 2 / fan_in, like He init)
        conv / linear bias      a = 0,   b = 0.1
        BatchNorm weight        a = 1,   b = 0.2
        BatchNorm bias          a = 0,   b = 0.1
        BatchNorm running_mean  a = 0,   b = 0.1
        BatchNorm running_var   a = 0.75, b = 0.25               (in [0.5, 1])
    Then, from the model's own forward on the fixture input (the final (a, b) are in the metadata):
      calibrate_bn  a and b of each BN's running_mean and running_var, in forward order, from the batch
                    statistics it sees, so activations stay O(1) through ResNet-18's residual sums;
      center_head   a of the last Linear's weight, so the batch mean of its pre-bias output is 0 (an
                    untrained net's logit is otherwise a large image-independent offset, the same sign
                    for both images, with an all-zero +logit Grad-CAM).
    The input: metadata `input` = {"shape", "terms": [[amp, freq, phase, chirp], ...]} with
    x_i = float32(sum over terms of amp * sin(freq * i + phase + chirp * i * i)), summed left to right in
    float64 from 0.
    Stored tensors: out/logits [2, 1] (eval mode, dropout = identity) and, for the Grad-CAM layer
    (metadata `gradcam_layer`: block4 / block5 / layer4), gradcam/A (the activation [2, C, h, w]),
    gradcam/weights [2, C] (spatial mean of d(+logit)/dA), gradcam/cam_prerelu [2, h, w] = sum_k w_k A_k
    and gradcam/cam = relu(cam_prerelu), per image, before any normalisation. (An untrained net's +logit
    cam can be all zero, as meso4_64's is: cam_prerelu keeps the comparison meaningful.)
    Metadata (all strings, JSON-encoded where structured):
      fill            JSON [[key, shape, a, b, sum], ...] in state-dict order; sum = float64 sum of the
                      float32 values (a check on the formula)
      state_dict_keys JSON list of PyTorch's model.state_dict() keys, num_batches_tracked included
      parameter_keys  JSON list of model.named_parameters() keys
      buffer_keys     JSON list of model.named_buffers() keys
      parameter_count sum of p.numel()
      input, model, size, gradcam_layer, torch (version), resnet_source (torchvision or hand-written)
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    import torchvision  # noqa: F401
    from torchvision.models import resnet18 as tv_resnet18

    HAVE_TV = True
except Exception:  # pragma: no cover - depends on the machine
    HAVE_TV = False

FREQ = 0.37
PHASE = 1.1
CHIRP = 0.0123


# ------------------------------------------------------------------------------------------------
# safetensors, by hand


def save_safetensors(path, tensors, metadata):
    """tensors: dict name -> np.ndarray (stored as F32, little-endian). Layout like the reference
    library: sorted by name (all the same dtype), header padded with spaces to a multiple of 8."""
    names = sorted(tensors, key=lambda s: s.encode("utf-8"))
    header = {"__metadata__": {k: metadata[k] for k in sorted(metadata)}}
    blobs = []
    off = 0
    for n in names:
        a = np.ascontiguousarray(np.asarray(tensors[n], dtype="<f4"))
        b = a.tobytes()
        header[n] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
    return 8 + len(h) + off


# ------------------------------------------------------------------------------------------------
# The fill formula


def formula(shape, a, b, k):
    n = int(np.prod(shape)) if len(shape) else 1
    i = np.arange(n, dtype=np.float64)
    v = a + b * np.sin(FREQ * i + PHASE * k + CHIRP * i * i)
    return v.astype(np.float32).reshape(shape)


def input_values(spec):
    """spec = {"shape": [...], "terms": [[amp, freq, phase, chirp], ...]}: x_i = float32(sum of
    amp * sin(freq * i + phase + chirp * i * i)), summed left to right in float64 starting from 0."""
    shape = spec["shape"]
    i = np.arange(int(np.prod(shape)), dtype=np.float64)
    v = np.zeros_like(i)
    for amp, freq, phase, chirp in spec["terms"]:
        v = v + amp * np.sin(freq * i + phase + chirp * i * i)
    return v.astype(np.float32).reshape(shape)


def fill_rule(key, shape, bn_prefixes):
    prefix, _, leaf = key.rpartition(".")
    if prefix in bn_prefixes:
        return {"weight": (1.0, 0.2), "bias": (0.0, 0.1), "running_mean": (0.0, 0.1), "running_var": (0.75, 0.25)}[leaf]
    if leaf == "weight":
        fan_in = int(np.prod(shape[1:]))
        return (0.0, 2.0 / math.sqrt(fan_in))
    if leaf == "bias":
        return (0.0, 0.1)
    raise ValueError(f"no fill rule for {key}")


def fill_model(model):
    """Fills every state-dict tensor by the formula with the default (a, b) (in place); returns the
    metadata list [[key, shape, a, b, sum], ...]."""
    bn_prefixes = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    sd = model.state_dict()
    keys = [k for k in sd if not k.endswith("num_batches_tracked")]
    out = []
    for k, key in enumerate(keys):
        shape = list(sd[key].shape)
        a, b = fill_rule(key, shape, bn_prefixes)
        out.append(set_fill(sd, [key, shape, a, b, 0.0], k))
    return out


def set_fill(sd, entry, k):
    key, shape, a, b, _ = entry
    v = formula(shape, a, b, k)
    with torch.no_grad():
        sd[key].copy_(torch.from_numpy(v.astype(np.float64)))
    return [key, shape, a, b, float(np.sum(v, dtype=np.float64))]


def round6(v):
    return float(f"{v:.6g}")


def calibrate_bn(model, fill, x):
    """Eval-mode BN with formula statistics does not normalise, so deep nets (ResNet's residual sums)
    drift far from O(1). Like a trained net, set each BN's running statistics (in forward order) from
    the batch it actually sees: running_mean a = mean of the channel means, b = 0.1 * their std;
    running_var a = mean of the channel variances, b = a / 4 (so it stays in [0.75a, 1.25a])."""
    sd = model.state_dict()
    index = {e[0]: k for k, e in enumerate(fill)}
    for name, m in model.named_modules():
        if not isinstance(m, nn.BatchNorm2d):
            continue
        seen = {}
        h = m.register_forward_pre_hook(lambda mod, inp: seen.__setitem__("x", inp[0].detach()))
        with torch.no_grad():
            model(x)
        h.remove()
        t = seen["x"]
        mean_c = t.mean(dim=(0, 2, 3))
        var_c = t.var(dim=(0, 2, 3), unbiased=False)
        spread = math.sqrt(float(var_c.mean()))
        km, kv = index[f"{name}.running_mean"], index[f"{name}.running_var"]
        va = round6(float(var_c.mean()))
        fill[km] = set_fill(sd, [fill[km][0], fill[km][1], round6(float(mean_c.mean())), round6(0.1 * spread), 0.0], km)
        fill[kv] = set_fill(sd, [fill[kv][0], fill[kv][1], va, round6(va / 4), 0.0], kv)


def center_head(model, fill, x):
    """An untrained net's logit is mostly an image-independent offset: the features entering the last
    Linear have per-channel means that the formula weights sum into one large logit of the same sign
    for every image (ResNet-18: about -9), and the +logit Grad-CAM is then all zero. Shift that
    layer's weight a so that the batch mean of its pre-bias output is 0: the logits are then
    bias +- the images' difference, and the test measures the part of the logit that depends on the
    image."""
    sd = model.state_dict()
    index = {e[0]: k for k, e in enumerate(fill)}
    name, last = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    seen = {}
    h = last.register_forward_pre_hook(lambda mod, inp: seen.__setitem__("x", inp[0].detach()))
    with torch.no_grad():
        model(x)
    h.remove()
    X = seen["x"]
    k = index[f"{name}.weight"]
    key, shape, a, b, _ = fill[k]
    s = torch.from_numpy(formula(shape, 0.0, 1.0, k).astype(np.float64))  # the sin part (f32-rounded)
    num = float((X @ s.t()).mean()) * b
    den = float(X.sum(1).mean())
    fill[k] = set_fill(sd, [key, shape, round6(a - num / den), b, 0.0], k)


# ------------------------------------------------------------------------------------------------
# Keras 'same' padding and the inception block: the bridge's (python/ticketlab_torch.py), so the
# fixtures and the modules users load our weights into cannot drift apart.

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from ticketlab_torch import Inception as InceptionLayer  # noqa: E402
from ticketlab_torch import SameConv2d, meso_feature_size, same_max_pool, same_pads  # noqa: E402,F401


# ------------------------------------------------------------------------------------------------
# The detectors, with the module names (and so the state-dict keys) of src/nn/models/*.ts


class MesoHeadMixin:
    def _add_head(self, in_features, outputs):
        self.dropout1 = nn.Dropout(0.5)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(in_features, 16)
        self.fc2 = nn.Linear(16, outputs)

    def head(self, x):
        y = self.dropout1(torch.flatten(x, 1))
        y = F.leaky_relu(self.fc1(y), 0.1)
        return self.fc2(self.dropout2(y))


class Meso4(nn.Module, MesoHeadMixin):
    gradcam_layer = "block4"

    def __init__(self, size, outputs=1):
        super().__init__()
        self.conv1 = SameConv2d(3, 8, 3)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = SameConv2d(8, 8, 5)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = SameConv2d(8, 16, 5)
        self.bn3 = nn.BatchNorm2d(16)
        self.conv4 = SameConv2d(16, 16, 5)
        self.bn4 = nn.BatchNorm2d(16)
        f = meso_feature_size(size)
        self._add_head(16 * f * f, outputs)

    def features(self, x, tap):
        # conv -> ReLU -> BN -> pool, as in the Keras original.
        y = tap("block1", same_max_pool(self.bn1(F.relu(self.conv1(x))), 2))
        y = tap("block2", same_max_pool(self.bn2(F.relu(self.conv2(y))), 2))
        y = tap("block3", same_max_pool(self.bn3(F.relu(self.conv3(y))), 2))
        return tap("block4", same_max_pool(self.bn4(F.relu(self.conv4(y))), 4))

    def forward(self, x, tap=lambda n, t: t):
        return self.head(self.features(x, tap))


class MesoInception4(nn.Module, MesoHeadMixin):
    gradcam_layer = "block4"

    def __init__(self, size, outputs=1):
        super().__init__()
        self.inc1 = InceptionLayer(3, 1, 4, 4, 2)
        self.bn1 = nn.BatchNorm2d(11)
        self.inc2 = InceptionLayer(11, 2, 4, 4, 2)
        self.bn2 = nn.BatchNorm2d(12)
        self.conv3 = SameConv2d(12, 16, 5)
        self.bn3 = nn.BatchNorm2d(16)
        self.conv4 = SameConv2d(16, 16, 5)
        self.bn4 = nn.BatchNorm2d(16)
        f = meso_feature_size(size)
        self._add_head(16 * f * f, outputs)

    def features(self, x, tap):
        y = tap("block1", same_max_pool(self.bn1(self.inc1(x)), 2))
        y = tap("block2", same_max_pool(self.bn2(self.inc2(y)), 2))
        y = tap("block3", same_max_pool(self.bn3(F.relu(self.conv3(y))), 2))
        return tap("block4", same_max_pool(self.bn4(F.relu(self.conv4(y))), 4))

    def forward(self, x, tap=lambda n, t: t):
        return self.head(self.features(x, tap))


class CNN5(nn.Module):
    gradcam_layer = "block5"
    widths = (16, 32, 64, 128, 176)

    def __init__(self, size, outputs=1):
        super().__init__()
        c = 3
        for i, w in enumerate(self.widths):
            setattr(self, f"conv{i + 1}", nn.Conv2d(c, w, 3, padding=1))
            setattr(self, f"bn{i + 1}", nn.BatchNorm2d(w))
            c = w
        self.fc = nn.Linear(c, outputs)

    def forward(self, x, tap=lambda n, t: t):
        y = x
        for i in range(len(self.widths)):
            conv, bn = getattr(self, f"conv{i + 1}"), getattr(self, f"bn{i + 1}")
            y = tap(f"block{i + 1}", same_max_pool(F.relu(bn(conv(y))), 2))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock (used only when torchvision is missing)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class HandResNet18(nn.Module):
    def __init__(self, num_classes=1):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c = 64
        for i, w in enumerate((64, 128, 256, 512)):
            s = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(c, w, s), BasicBlock(w, w, 1)))
            c = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)


class ResNet18(nn.Module):
    """torchvision's resnet18(num_classes=1), with a tap after each layerN. Keys are torchvision's
    (this wrapper adds no prefix: it copies the submodules over)."""

    gradcam_layer = "layer4"

    def __init__(self, size, outputs=1):
        super().__init__()
        net = tv_resnet18(num_classes=outputs) if HAVE_TV else HandResNet18(outputs)
        for n, m in net.named_children():
            setattr(self, n, m)

    def forward(self, x, tap=lambda n, t: t):
        y = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(4):
            y = tap(f"layer{i + 1}", getattr(self, f"layer{i + 1}")(y))
        return self.fc(torch.flatten(self.avgpool(y), 1))


MODELS = {"meso4": Meso4, "mesoinception4": MesoInception4, "cnn5": CNN5, "resnet18": ResNet18}


# ------------------------------------------------------------------------------------------------


def detector_fixture(name, size, outdir):
    torch.manual_seed(0)  # construction draws default inits; they are all overwritten
    model = MODELS[name](size).eval()
    fill = fill_model(model)
    model = model.double()
    sd_keys = list(model.state_dict().keys())
    # A fast wave, a slow one and a chirp, so the two images (and the channels) differ in more than phase.
    input_spec = {"shape": [2, 3, size, size], "terms": [[0.5, 0.37, 0.3, 0.0], [1.0, 0.0011, 0.0, 0.0], [0.3, 0.0, 0.0, 1e-5]]}
    x = torch.from_numpy(input_values(input_spec).astype(np.float64))
    calibrate_bn(model, fill, x)
    center_head(model, fill, x)

    acts = {}

    def tap(n, t):
        acts[n] = float(t.detach().std())
        if n == model.gradcam_layer:
            t = t.detach().requires_grad_(True)
            acts["A"] = t
        return t

    logits = model(x, tap)
    A = acts["A"]
    (g,) = torch.autograd.grad(logits[:, 0].sum(), A)
    w = g.mean(dim=(2, 3))  # [N, C]
    pre = (w[:, :, None, None] * A).sum(1)  # [N, h, w]
    cam = F.relu(pre)

    # Sanity: the eval forward with the tap identity equals the plain forward.
    with torch.no_grad():
        assert torch.equal(model(x), logits.detach())

    tensors = {
        "out/logits": logits.detach().numpy(),
        "gradcam/A": A.detach().numpy(),
        "gradcam/weights": w.detach().numpy(),
        "gradcam/cam_prerelu": pre.detach().numpy(),
        "gradcam/cam": cam.detach().numpy(),
    }
    meta = {
        "model": name,
        "size": str(size),
        "torch": torch.__version__,
        "resnet_source": ("torchvision" if HAVE_TV else "hand-written") if name == "resnet18" else "n/a",
        "fill": json.dumps(fill),
        "input": json.dumps(input_spec),
        "state_dict_keys": json.dumps(sd_keys),
        "parameter_keys": json.dumps([k for k, _ in model.named_parameters()]),
        "buffer_keys": json.dumps([k for k, _ in model.named_buffers()]),
        "parameter_count": str(sum(p.numel() for p in model.parameters())),
        "gradcam_layer": model.gradcam_layer,
    }
    path = os.path.relpath(os.path.join(outdir, f"{name}_{size}.safetensors"))
    nbytes = save_safetensors(path, tensors, meta)
    lg = logits.detach().numpy().ravel()
    print(
        f"{path}: {nbytes} bytes, logits {np.array2string(lg, precision=5)}, "
        f"A {list(A.shape)} |A|max {A.abs().max().item():.3g}, cam max {cam.max().item():.3g}, "
        f"cam>0 {int((cam > 0).sum())}/{cam.numel()}, std per tap "
        + " ".join(f"{v:.3g}" for k, v in acts.items() if k != "A")
    )


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 1)

    def forward(self, x):
        y = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(torch.flatten(y, 1))


def small_net_fixture(outdir):
    rng = np.random.RandomState(20240607)
    net = SmallNet().double().train()
    state = {}
    with torch.no_grad():
        for k, t in net.state_dict().items():
            if k.endswith("num_batches_tracked"):
                continue
            if k == "bn.running_var":
                v = rng.uniform(0.5, 1.5, size=t.shape)
            elif k == "bn.weight":
                v = rng.uniform(0.5, 1.5, size=t.shape)
            elif k == "bn.running_mean":
                v = rng.uniform(-0.2, 0.2, size=t.shape)
            else:
                fan_in = int(np.prod(t.shape[1:])) if t.dim() > 1 else 4.0
                bound = 1.0 / math.sqrt(fan_in) if t.dim() > 1 else 0.3
                v = rng.uniform(-bound, bound, size=t.shape)
            v = v.astype(np.float32)
            state[k] = v
            t.copy_(torch.from_numpy(v.astype(np.float64)))
    x32 = rng.uniform(-1.0, 1.0, size=(2, 3, 8, 8)).astype(np.float32)
    target32 = np.array([[1.0], [0.0]], dtype=np.float32)
    x = torch.from_numpy(x32.astype(np.float64)).requires_grad_(True)
    target = torch.from_numpy(target32.astype(np.float64))
    logits = net(x)
    loss = F.binary_cross_entropy_with_logits(logits, target)
    loss.backward()

    tensors = {f"state/{k}": v for k, v in state.items()}
    tensors["input/x"] = x32
    tensors["input/target"] = target32
    tensors["out/logits"] = logits.detach().numpy()
    tensors["out/loss"] = loss.detach().numpy().reshape(())
    for k, p in net.named_parameters():
        tensors[f"grad/{k}"] = p.grad.numpy()
    tensors["grad/x"] = x.grad.numpy()
    tensors["after/bn.running_mean"] = net.bn.running_mean.numpy()
    tensors["after/bn.running_var"] = net.bn.running_var.numpy()
    meta = {
        "model": "small_net",
        "torch": torch.__version__,
        "net": "conv2d(3,4,3,padding=1) -> BatchNorm2d(4) train, momentum 0.1 -> relu -> max_pool2d(2) -> "
        "flatten -> Linear(64,1); mean BCE-with-logits; reference in float64",
        "state_dict_keys": json.dumps([k for k in net.state_dict()]),
    }
    path = os.path.relpath(os.path.join(outdir, "small_net.safetensors"))
    nbytes = save_safetensors(path, tensors, meta)
    print(f"{path}: {nbytes} bytes, logits {logits.detach().numpy().ravel()}, loss {loss.item():.6f}")


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)  # deterministic reductions
    small_net_fixture(outdir)
    for name, size in [("meso4", 64), ("mesoinception4", 64), ("cnn5", 64), ("resnet18", 64), ("meso4", 72), ("cnn5", 72)]:
        detector_fixture(name, size, outdir)


if __name__ == "__main__":
    main()
