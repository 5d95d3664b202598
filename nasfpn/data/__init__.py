"""Data: converters to MindRecord, transforms, MindDataset pipelines, the embedded dataset."""
