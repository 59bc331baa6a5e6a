"""SimReg prediction heads (dropped after training). `nn.Sequential` indices follow the reference's
`mlp_arch.get_mlp` so that reference heads load; d = student width, D = target:
- 4 layers (default): 0 Linear(d,2d) 1 BN(2d) 2 ReLU 3 Linear(2d,d) 4 Linear(d,2d) 5 BN(2d) 6 ReLU 7 Linear(2d,D)
- 2 layers:           0 Linear(d,2d) 1 Linear(2d,D)  -- no BN/ReLU: the reference's head is linear
- 2 layers, `--mlp2-bn-relu`: 0 Linear(d,2d) 1 BN(2d) 2 ReLU 3 Linear(2d,D)  (its docstring's intent)
- 1 layer (`--mlp-layers 1`, the reference's `--linear_pred`, repaired: it crashes there): 0 BN(d) 1 Linear(d,D)
"""
import torch.nn as nn


def prediction_head(d, out_dim, layers=4, bn_relu_in_mlp2=False):
    if layers == 4:
        return nn.Sequential(nn.Linear(d, 2 * d), nn.BatchNorm1d(2 * d), nn.ReLU(inplace=True),
                             nn.Linear(2 * d, d),
                             nn.Linear(d, 2 * d), nn.BatchNorm1d(2 * d), nn.ReLU(inplace=True),
                             nn.Linear(2 * d, out_dim))
    if layers == 2 and bn_relu_in_mlp2:
        return nn.Sequential(nn.Linear(d, 2 * d), nn.BatchNorm1d(2 * d), nn.ReLU(inplace=True),
                             nn.Linear(2 * d, out_dim))
    if layers == 2:
        return nn.Sequential(nn.Linear(d, 2 * d), nn.Linear(2 * d, out_dim))
    if layers == 1:
        return nn.Sequential(nn.BatchNorm1d(d), nn.Linear(d, out_dim))
    raise ValueError(f"prediction head with {layers} layers is not defined: use 4, 2 or 1 (linear)")
