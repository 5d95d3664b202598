"""Box maths and the losses: numpy and MindSpore leaves that know nothing of configs or files."""
