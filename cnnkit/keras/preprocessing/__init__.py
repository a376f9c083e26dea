"""`cnnkit.keras.preprocessing.image.ImageDataGenerator`, as Keras's, and
`preprocessing.image_dataset_from_directory`, Keras's other name for the utils one."""
from cnnkit.keras.image_dataset import image_dataset_from_directory  # noqa: F401
from cnnkit.keras.preprocessing import image  # noqa: F401
