"""NAS-FPN (RetinaNet) on MindSpore."""
