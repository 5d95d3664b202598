"""What an entry point's job needs around it: ModelArts, Ascend rank tables, profiling."""
