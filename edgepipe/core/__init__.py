"""The small shared core every stage may import: user errors, atomic file
writes, argparse types and argument groups, progress lines, the accelerator
names and the SSH layer. It imports nothing else of ours, so it can never
pull a stage (or TensorFlow) into another stage."""
