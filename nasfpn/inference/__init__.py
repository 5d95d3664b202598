"""Running a built or exported network on images: runtimes, network build, the published checkpoint, detection post-processing, detection on image files."""
