"""ticketlab <-> PyTorch bridge. Needs only the Python standard library and torch (no numpy, no
torchvision, no safetensors package).

- Meso4, MesoInception4, CNN5, ResNet18: nn.Modules whose state_dict keys and shapes are ticketlab's
  (src/nn/models/), so a ticketlab weights file loads with load_state_dict(strict=True) and gives the
  same logits (eval mode). Keras 'same' padding and pooling are reproduced where the Meso nets use them.
- load_file / save_file: a safetensors reader and writer (F32, F64, F16, BF16, I64, I32, I16, I8, U8,
  BOOL), little-endian, with string metadata.
- load_run(run_dir, level=0, which="final"): a ticketlab run's model, weights and mask, ready to use.
- save_pruned(model, path): a model pruned with torch.nn.utils.prune (or holding masks as weight_mask
  buffers) saved the way `ticketlab check` and ticketlab's loaders read it: <layer>.weight (the pruned
  weight, weight_orig * weight_mask) and <layer>.weight_mask for every pruned parameter, the other
  tensors as they are.

    import ticketlab_torch as tt
    model, masks = tt.load_run("runs/meso4-synthetic-s0", level=1)
    logits = model(x)                              # x: [N, 3, size, size], values as ticketlab feeds them
    tt.save_pruned(pruned_model, "out/level_1.safetensors")

Put this folder on the path: PYTHONPATH=node_modules/ticketlab/python (installed package) or python/
(a checkout).
"""
import ctypes
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Meso4", "MesoInception4", "CNN5", "ResNet18", "MODELS", "create_model", "load_file", "save_file", "load_run", "save_pruned", "SameConv2d", "same_pads", "same_max_pool", "meso_feature_size", "Inception"]

# ------------------------------------------------------------------------------------------------
# safetensors: u64 LE header length | JSON header (space-padded) | raw little-endian data

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}

if sys.byteorder != "little":  # pragma: no cover - every platform torch ships for is little-endian
    raise ImportError("ticketlab_torch reads and writes little-endian safetensors and needs a little-endian machine")


def load_file(path):
    """Returns (tensors, metadata): dict name -> torch.Tensor (CPU, own memory), dict of strings."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: header length {n} exceeds the file")
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + n
    out = {}
    for name, e in header.items():
        dtype = _DTYPES.get(e["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor '{name}' has dtype {e['dtype']}, which this reader does not support")
        start, end = e["data_offsets"]
        shape = list(e["shape"])
        count = math.prod(shape)
        size = torch.empty((), dtype=dtype).element_size()
        if end - start != count * size or base + end > len(raw):
            raise ValueError(f"{path}: tensor '{name}' has {end - start} bytes for shape {shape} of {e['dtype']}")
        if count == 0:
            out[name] = torch.empty(shape, dtype=dtype)
            continue
        buf = bytearray(raw[base + start : base + end])
        out[name] = torch.frombuffer(buf, dtype=dtype).reshape(shape).clone()
    return out, metadata


def _bytes(t):
    t = t.detach().cpu().contiguous()
    if t.numel() == 0:
        return b""
    return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size())


def save_file(tensors, path, metadata=None):
    """Writes dict name -> tensor as safetensors (sorted by name, header padded to 8 bytes), atomically."""
    names = sorted(tensors, key=lambda s: s.encode("utf-8"))
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for n in names:
        t = tensors[n]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"save_file: '{n}' is a {type(t).__name__}, not a tensor")
        if t.dtype not in _NAMES:
            raise TypeError(f"save_file: '{n}' has dtype {t.dtype}, which safetensors files here cannot hold")
        b = _bytes(t)
        header[n] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------
# Keras 'same' padding (TensorFlow's rule: out = ceil(in / s), the extra pad at the bottom/right)


def same_pads(size, k, s, d=1):
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """nn.Conv2d with Keras 'same' zero padding (the keys of nn.Conv2d)."""

    def forward(self, x):
        kh, kw = self.kernel_size
        t, b = same_pads(x.shape[2], kh, self.stride[0], self.dilation[0])
        l, r = same_pads(x.shape[3], kw, self.stride[1], self.dilation[1])
        return F.conv2d(F.pad(x, (l, r, t, b)), self.weight, self.bias, self.stride, 0, self.dilation)


def same_max_pool(x, k):
    """Keras MaxPooling2D(pool_size=k, strides=k, padding='same'): -inf padding where needed."""
    t, b = same_pads(x.shape[2], k, k)
    l, r = same_pads(x.shape[3], k, k)
    if t or b or l or r:
        x = F.pad(x, (l, r, t, b), value=float("-inf"))
    return F.max_pool2d(x, k, k)


def meso_feature_size(size):
    s = size
    for k in (2, 2, 2, 4):
        s = -(-s // k)
    return s


# ------------------------------------------------------------------------------------------------
# The detectors (src/nn/models/*.ts): module names, and so state_dict keys, are ticketlab's.


class _MesoTail:
    """What Meso-4 and MesoInception-4 share after their first two blocks: blocks 3 and 4
    (conv -> ReLU -> BN -> max-pool) and the dense head."""

    def _add_tail(self, cin, size, outputs):
        self.conv3 = SameConv2d(cin, 16, 5)
        self.bn3 = nn.BatchNorm2d(16)
        self.conv4 = SameConv2d(16, 16, 5)
        self.bn4 = nn.BatchNorm2d(16)
        f = meso_feature_size(size)
        self.dropout1 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(16 * f * f, 16)
        self.dropout2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, outputs)

    def _tail(self, y):
        y = same_max_pool(self.bn3(F.relu(self.conv3(y))), 2)
        y = same_max_pool(self.bn4(F.relu(self.conv4(y))), 4)
        y = self.dropout1(torch.flatten(y, 1))
        y = F.leaky_relu(self.fc1(y), 0.1)
        return self.fc2(self.dropout2(y))


class Meso4(nn.Module, _MesoTail):
    """Meso-4 (Afchar et al. 2018): 4 conv blocks (conv -> ReLU -> BN -> max-pool), Keras 'same' padding."""

    def __init__(self, size=256, outputs=1):
        super().__init__()
        self.conv1 = SameConv2d(3, 8, 3)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = SameConv2d(8, 8, 5)
        self.bn2 = nn.BatchNorm2d(8)
        self._add_tail(8, size, outputs)

    def forward(self, x):
        y = same_max_pool(self.bn1(F.relu(self.conv1(x))), 2)
        y = same_max_pool(self.bn2(F.relu(self.conv2(y))), 2)
        return self._tail(y)


class Inception(nn.Module):
    def __init__(self, cin, a, b, c, d):
        super().__init__()
        self.b1 = nn.Conv2d(cin, a, 1)
        self.b2a = nn.Conv2d(cin, b, 1)
        self.b2b = nn.Conv2d(b, b, 3, padding=1)
        self.b3a = nn.Conv2d(cin, c, 1)
        self.b3b = nn.Conv2d(c, c, 3, padding=2, dilation=2)
        self.b4a = nn.Conv2d(cin, d, 1)
        self.b4b = nn.Conv2d(d, d, 3, padding=3, dilation=3)

    def forward(self, x):
        r = F.relu
        return torch.cat([r(self.b1(x)), r(self.b2b(r(self.b2a(x)))), r(self.b3b(r(self.b3a(x)))), r(self.b4b(r(self.b4a(x))))], 1)


class MesoInception4(nn.Module, _MesoTail):
    """MesoInception-4: two inception blocks (1x1 and dilated 3x3 branches), then Meso-4's last two blocks."""

    def __init__(self, size=256, outputs=1):
        super().__init__()
        self.inc1 = Inception(3, 1, 4, 4, 2)
        self.bn1 = nn.BatchNorm2d(11)
        self.inc2 = Inception(11, 2, 4, 4, 2)
        self.bn2 = nn.BatchNorm2d(12)
        self._add_tail(12, size, outputs)

    def forward(self, x):
        y = same_max_pool(self.bn1(self.inc1(x)), 2)
        y = same_max_pool(self.bn2(self.inc2(y)), 2)
        return self._tail(y)


class CNN5(nn.Module):
    """Five conv -> BN -> ReLU -> max-pool blocks (16 .. 176 channels), global average pooling, one Linear."""

    widths = (16, 32, 64, 128, 176)

    def __init__(self, size=256, outputs=1):
        super().__init__()
        c = 3
        for i, w in enumerate(self.widths):
            setattr(self, f"conv{i + 1}", nn.Conv2d(c, w, 3, padding=1))
            setattr(self, f"bn{i + 1}", nn.BatchNorm2d(w))
            c = w
        self.fc = nn.Linear(c, outputs)

    def forward(self, x):
        y = x
        for i in range(len(self.widths)):
            y = same_max_pool(F.relu(getattr(self, f"bn{i + 1}")(getattr(self, f"conv{i + 1}")(y))), 2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


class _BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet18(nn.Module):
    """torchvision's resnet18 layout and keys (conv1, bn1, layer1..4.{0,1}.*, fc), written out so that
    torchvision is not needed."""

    def __init__(self, size=224, outputs=1):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        c = 64
        for i, w in enumerate((64, 128, 256, 512)):
            setattr(self, f"layer{i + 1}", nn.Sequential(_BasicBlock(c, w, 1 if i == 0 else 2), _BasicBlock(w, w, 1)))
            c = w
        self.fc = nn.Linear(512, outputs)

    def forward(self, x):
        y = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(4):
            y = getattr(self, f"layer{i + 1}")(y)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


MODELS = {"meso4": Meso4, "mesoinception4": MesoInception4, "cnn5": CNN5, "resnet18": ResNet18}


def create_model(name, size, outputs=1):
    if name not in MODELS:
        raise ValueError(f"create_model: name '{name}' is not one of {', '.join(MODELS)}")
    return MODELS[name](size, outputs)


# ------------------------------------------------------------------------------------------------
# Runs and pruned models


def _mask_key(k):
    return k[: -len("_mask")]


def load_run(run, level=0, which="final"):
    """A ticketlab run's model in eval mode with level_<level>/<which>.safetensors loaded (strict), and
    that level's masks (dict '<layer>.weight' -> 0/1 float tensor; empty for a dense level)."""
    with open(os.path.join(run, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    model = create_model(cfg["model"], int(cfg["size"]))
    level_dir = os.path.join(run, f"level_{level}")
    weights, _ = load_file(os.path.join(level_dir, f"{which}.safetensors"))
    # Checkpoints also hold optimizer state and the loop position: keep the model's keys.
    own = set(model.state_dict())
    model.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=True)
    masks = {}
    mask_file = os.path.join(level_dir, "mask.safetensors")
    if os.path.exists(mask_file):
        masks = {_mask_key(k): v.float() for k, v in load_file(mask_file)[0].items() if k.endswith("_mask")}
    return model.eval(), masks


def save_pruned(model, path, metadata=None):
    """Saves a (pruned) model the way `ticketlab check` and ticketlab's loaders read it: the weight
    torch computes (weight_orig * weight_mask) as <layer>.weight, the mask as <layer>.weight_mask, and
    every other state_dict tensor as it is (num_batches_tracked included). Works on models pruned
    with torch.nn.utils.prune before or after prune.remove (after it, there are no masks to save)."""
    sd = model.state_dict()
    out = {}
    for k, v in sd.items():
        if k.endswith("_orig"):
            continue
        out[k] = v
    for k in [k for k in sd if k.endswith("_orig")]:
        base = k[: -len("_orig")]
        mask = sd.get(f"{base}_mask")
        if mask is None:
            raise ValueError(f"save_pruned: '{k}' has no '{base}_mask' beside it")
        out[base] = (sd[k] * mask).detach()
        out[f"{base}_mask"] = mask.detach().float()
    save_file(out, path, {"ticketlab": "pruned-torch", "torch": torch.__version__, **(metadata or {})})
