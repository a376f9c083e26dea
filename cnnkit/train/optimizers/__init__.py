"""cnnkit's optimizers: one registry, one class per name, one file per optimizer.

    sgd      SGD(learning_rate=0.01, momentum=0.0, nesterov=False)
    adagrad  Adagrad(learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7)
    rmsprop  RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False)
    adam     Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False)
    adamw    AdamW(..., weight_decay=0.004)
    adadelta Adadelta(learning_rate=0.001, rho=0.95, epsilon=1e-7)
    adamax   Adamax(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    nadam    Nadam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    ftrl     Ftrl(learning_rate=0.001, learning_rate_power=-0.5, initial_accumulator_value=0.1,
                  l1_regularization_strength=0.0, l2_regularization_strength=0.0,
                  l2_shrinkage_regularization_strength=0.0, beta=0.0)
    lion     Lion(learning_rate=0.001, beta_1=0.9, beta_2=0.99)
and for each: weight_decay, clipnorm, global_clipnorm, clipvalue. Every one takes Keras 3's
defaults and Keras 3's update rule (tests/keras/test_optimizers_keras.py compares each with
real Keras); `cnnkit.keras.optimizers` names these same classes.

A new optimizer is one module here: a class with `@register`, its arguments and checks in
`__init__`, its per-parameter state in `slots` and its rule in `update`, imported below.
"""
from cnnkit.train.optimizers.base import (  # noqa: F401
    COMMON, REGISTRY, Optimizer, Stepper, create, names, optimizer_class, optimizer_name, register,
    takes)
from cnnkit.train.optimizers.sgd import SGD  # noqa: F401  (registration order: the CLI's)
from cnnkit.train.optimizers.adagrad import Adagrad  # noqa: F401
from cnnkit.train.optimizers.rmsprop import RMSprop  # noqa: F401
from cnnkit.train.optimizers.adam import Adam, AdamW  # noqa: F401
from cnnkit.train.optimizers.adadelta import Adadelta  # noqa: F401
from cnnkit.train.optimizers.adamax import Adamax  # noqa: F401
from cnnkit.train.optimizers.nadam import Nadam  # noqa: F401
from cnnkit.train.optimizers.ftrl import Ftrl  # noqa: F401
from cnnkit.train.optimizers.lion import Lion  # noqa: F401
from cnnkit.train.optimizers.trainable import (  # noqa: F401
    FROZEN_BY_FLAG, frozen_norms, trained_parameters)
