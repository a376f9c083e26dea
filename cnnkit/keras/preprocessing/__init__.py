"""`cnnkit.keras.preprocessing.image.ImageDataGenerator`, as Keras's."""
from cnnkit.keras.preprocessing import image  # noqa: F401
