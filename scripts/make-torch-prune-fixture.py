#!/usr/bin/env python3
"""Writes tests/fixtures/torch-prune/: what a PyTorch user's lottery-ticket run looks like on disk, for
`ticketlab check` (tests/prune/check.test.ts). Needs torch only here; the tests read the committed files.

A small conv net is pruned with torch.nn.utils.prune.global_unstructured (L1, amount 0.2 of the remaining
weights per round, 3 rounds), rewound to its initial weights and trained a few SGD steps (with weight
decay, so weight_orig moves at pruned entries too) between rounds. After each round the model's
state_dict, which holds `<layer>.weight_orig` and `<layer>.weight_mask` for every pruned layer, is saved
as level_<k>.safetensors. With the `safetensors` package the save is the usual

    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)

and without it the same bytes come from scripts/make-fixtures.py's hand-written writer.

Usage: /usr/bin/python3 scripts/make-torch-prune-fixture.py [OUTDIR]   (default tests/fixtures/torch-prune)
"""
import copy
import importlib.util
import os
import sys

import torch
import torch.nn as nn
import torch.nn.utils.prune as prune

HERE = os.path.dirname(os.path.abspath(__file__))


def saver():
    try:
        from safetensors.torch import save_file

        return lambda path, sd: save_file({k: v.contiguous() for k, v in sd.items()}, path, metadata={"format": "pt"})
    except ImportError:
        spec = importlib.util.spec_from_file_location("make_fixtures", os.path.join(HERE, "make-fixtures.py"))
        mf = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mf)
        return lambda path, sd: mf.save_safetensors(path, {k: v.detach().numpy() for k, v in sd.items()}, {"format": "pt"})


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc1 = nn.Linear(6 * 4 * 4, 8)
        self.fc2 = nn.Linear(8, 1)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "tests", "fixtures", "torch-prune")
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = Net()
    init = copy.deepcopy(model.state_dict())
    x = torch.randn(16, 3, 16, 16)
    y = (torch.rand(16, 1) > 0.5).float()
    params = [(model.conv1, "weight"), (model.conv2, "weight"), (model.fc1, "weight")]
    save = saver()

    def train(steps=5):
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-2)
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
            opt.step()

    train()
    for level in range(1, 4):
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.2)
        # Rewind: the surviving weights go back to theta_0 (weight_orig holds the unmasked values).
        with torch.no_grad():
            for m, name in params:
                getattr(m, name + "_orig").copy_(init[[k for k, v in model.named_modules() if v is m][0] + "." + name])
            model.conv1.bias.copy_(init["conv1.bias"])
        train()
        path = os.path.join(out, f"level_{level}.safetensors")
        save(path, model.state_dict())
        print(f"wrote {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
