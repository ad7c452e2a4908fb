"""The transfer benchmarks: one frozen benchmark per dataset of the field's transfer suites (Kornblith et al.
2019; Ericsson et al. 2021), read through ``torchvision.datasets`` (``tv:`` specs, :mod:`bench.data.torchvision_sets`).

Plain data (keyword sets of :class:`bench.benchmarks.Benchmark`), so this module imports nothing of the registry.
Shared protocol: 224 px; images decoded at 256 px and centre-cropped at 224 (crop 0.875), except the low-resolution
CIFAR-10/100 (32 px), STL-10 (96 px) and EuroSAT (64 px), which are upsampled to 224 as the transfer papers do
(``upsample``); k-NN and linear probes (a suite's aggregate needs the same probes on every dataset); linear probes
train 100 epochs on datasets with fewer than 10k training images, 30 on the others. Hyper-parameters are selected
on the official val split where the dataset has one (``trainval``: Flowers-102, DTD, FGVC-Aircraft; the chosen
probe is refit on train + val), else on a stratified 10 % hold-out of train; every benchmark scores its test split
once. No data fingerprint is pinned: the official files are not in this repository to hash (records still carry
the fingerprint of the data they ran on, and a leaderboard row never mixes two)."""

from __future__ import annotations

#: ``bench submit`` settings (the suites evaluate encoders trained elsewhere; a budget must still be named)
_BUDGET = {"backbone": "resnet50", "backbone_kwargs": {"stem": "imagenet"}, "img_size": 224, "epochs": 100,
           "batch_size": 256}
_COMMON = dict(version=1, img_size=224, crop_pct=0.875, probes=("knn", "linear"), headline="linear_top1",
               budget=_BUDGET, eval_split="test")
_LOW_RES = dict(crop_pct=1.0, upsample=True)
_VAL_SELECTED = ("official train / val / test splits: probe hyper-parameters selected on val (fit on train), "
                 "the chosen probe refit on train + val and scored once on test")
_HOLDOUT = "probe hyper-parameters selected on a 10 % hold-out of train, scored once on test"

#: name -> (data spec, train split, linear epochs, extra fields, description)
_SPECS = {
    "cifar10": ("tv:cifar10", "train", 30, _LOW_RES,
                f"CIFAR-10 (10 classes, 50k train / 10k test, 32 px upsampled to 224); {_HOLDOUT}."),
    "cifar100": ("tv:cifar100", "train", 30, _LOW_RES,
                 f"CIFAR-100 (100 classes, 50k train / 10k test, 32 px upsampled to 224); {_HOLDOUT}."),
    "stl10": ("tv:stl10", "train", 100, _LOW_RES,
              f"STL-10 labelled splits (10 classes, 5k train / 8k test, 96 px upsampled to 224); {_HOLDOUT}."),
    "flowers102": ("tv:flowers102", "trainval", 100, {},
                   f"Oxford Flowers-102 (102 classes, 1020 train / 1020 val / 6149 test); {_VAL_SELECTED}."),
    "pets": ("tv:pets", "trainval", 100, {},
             f"Oxford-IIIT Pets (37 breeds, 3680 trainval / 3669 test; no val split); {_HOLDOUT.replace('train', 'trainval', 1)}."),
    "dtd": ("tv:dtd", "trainval", 100, {},
            f"Describable Textures (47 classes, partition 1: 1880 train / 1880 val / 1880 test); {_VAL_SELECTED}."),
    "food101": ("tv:food101", "train", 30, {},
                f"Food-101 (101 classes, 75750 train / 25250 test); {_HOLDOUT}."),
    "aircraft": ("tv:aircraft", "trainval", 100, {},
                 f"FGVC-Aircraft variants (100 classes, 3334 train / 3333 val / 3333 test); {_VAL_SELECTED}."),
    "cars": ("tv:cars", "train", 100, {},
             f"Stanford Cars (196 classes, 8144 train / 8041 test); {_HOLDOUT}."),
    "caltech101": ("tv:caltech101", "train", 100, {},
                   "Caltech-101 (101 classes, background excluded): a fixed seeded split, 30 train images per class, "
                   f"the rest test (torchvision has no split); {_HOLDOUT}."),
    "eurosat": ("tv:eurosat", "train", 30, _LOW_RES,
                "EuroSAT RGB (10 classes, 27k images, 64 px upsampled to 224): a fixed seeded per-class 80 / 20 "
                f"train / test split (torchvision has no split); {_HOLDOUT}."),
    "sun397": ("tv:sun397", "train", 30, {},
               "SUN397 (397 scene classes): a fixed seeded split of 50 train + 50 test images per class, the sizes "
               f"of the official partitions (torchvision reads none); {_HOLDOUT}."),
}

#: the benchmark keyword sets, registered by :mod:`bench.benchmarks`
TRANSFER_BENCHMARKS = [
    dict(_COMMON, name=name, data=data, train_split=train_split, linear_epochs=epochs, description=desc, **extra)
    for name, (data, train_split, epochs, extra, desc) in _SPECS.items()
]
