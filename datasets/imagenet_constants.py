"""ImageNet's facts that need no torchvision: its normalisation, SimReg's 100-class subset and the
names of SimReg's view pairs. The registry and the command lines read them here, so that a process
training on an in-memory data set does not import torchvision."""
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# SimReg's ImageNet-100: original class indices (sorted-wnid order) picked by
# np.random.seed(1234); np.random.permutation(1000)[:100], sorted
IMAGENET100_INDICES = (
    21, 29, 40, 60, 78, 89, 99, 108, 112, 118, 122, 124, 128, 143, 155, 166, 175, 188, 192, 202, 206, 219,
    241, 266, 270, 287, 319, 339, 341, 347, 361, 363, 369, 382, 386, 406, 416, 428, 438, 443, 444, 466,
    467, 473, 477, 489, 495, 498, 501, 502, 516, 536, 555, 566, 569, 571, 585, 603, 620, 622, 624, 635,
    645, 672, 675, 681, 688, 705, 706, 709, 742, 756, 758, 764, 765, 768, 778, 782, 790, 793, 804, 833,
    835, 852, 860, 875, 878, 882, 887, 888, 895, 899, 929, 931, 938, 952, 958, 982, 983, 990)

# SimReg's (teacher, student) augmentation pairs for image folders
AUGMENTATIONS = ("weak_weak", "weak_strong", "strong_strong")
