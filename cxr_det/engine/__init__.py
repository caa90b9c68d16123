from .trainer import Trainer, adapt_to_device, class_head_key, get_cxr_cfg, setup

__all__ = ["Trainer", "adapt_to_device", "class_head_key", "get_cxr_cfg", "setup"]
