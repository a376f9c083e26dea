"""`python -m cnnkit.kernels`: build cnnkit's kernels for this machine now (make setup runs it),
and say whether they are in use."""
from cnnkit import kernels

if __name__ == "__main__":
    print(f"cnnkit kernels: {kernels.description()}")
