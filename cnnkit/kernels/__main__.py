"""`python -m cnnkit.kernels`: compile cnnkit's kernels for this machine now (`make setup` runs
it), and say whether they are in use. Without a compiler it says so and exits 0: cnnkit then
runs torch's ops."""
from cnnkit import kernels
from cnnkit.errors import CnnkitError

if __name__ == "__main__":
    try:
        print(f"cnnkit kernels: {kernels.build()}")
    except CnnkitError as e:
        print(f"cnnkit kernels: {e}")
    print(f"cnnkit kernels: {kernels.description()}")
