"""Pure, batched tensor kernels: blends, masks, image ops.

No Ray and no I/O here. Images are ``uint8`` tensors shaped ``(C, H, W)`` or
``(N, C, H, W)`` at the boundary (torchvision's convention); kernels may work in
float internally. The same code runs on CPU and CUDA.
"""
