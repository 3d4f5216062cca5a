"""The optimizers: Adam (the GAN) and AdamW with an optional cosine learning-rate decay (the VAE and the
text models), each updating its variables with TensorFlow's fused Adam kernel; the text models' AdamW also
clips (--clip-norm) the gradients it has summed over replicas.

Both speed-ups override Keras internals (private names), which another Keras 3 may lack or use otherwise.
Each is checked once per process, on tiny variables, against Keras' own computation (fused_update_usable,
summed_clipping_usable); where a check fails, one line says why and Keras' own path is used.
"""

import concurrent.futures
import functools
import sys

import keras
import numpy as np
import tensorflow as tf

from training import commands


class FusedAdamUpdate:
    """Adam's update of one variable as TensorFlow's fused kernel (tf.raw_ops.ResourceApplyAdam).

    The same formula as Keras' Adam.update_step (Kingma & Ba 2015, algorithm 1 with the bias
    corrections folded into the step size):
        m <- m + (1 - beta_1) (g - m),  v <- v + (1 - beta_2) (g^2 - v),
        w <- w - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)
    but one pass over w, m and v instead of about ten element-wise ops, each reading and writing
    whole tensors: at the README's batch sizes that was a third of the GAN's step on a CPU. The slots
    are Keras' own, so checkpoints are unchanged. AMSGrad keeps Keras' update.
    """

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        """Updates every variable with the step's shared scalars computed once: Keras recomputes them for
        each variable (each a chain of small ops that grappler cannot merge, as it reads the step counter),
        which for the VAE's 18 variables was more ops than the model itself."""
        if self.amsgrad:
            return super()._distributed_tf_update_step(distribution, grads_and_vars, learning_rate)
        # Here in cross-replica context: learning_rate is per replica (update() hands each device its own).
        step = tf.cast(self.iterations + 1, tf.float32)
        beta_1, beta_2 = tf.cast(self.beta_1, tf.float32), tf.cast(self.beta_2, tf.float32)
        shared = {"lr": learning_rate, "beta_1": beta_1, "beta_2": beta_2, "epsilon": tf.cast(self.epsilon, tf.float32),
                  "beta_1_power": tf.pow(beta_1, step), "beta_2_power": tf.pow(beta_2, step)}
        for gradient, variable in grads_and_vars:
            distribution.extended.update(variable, self._fused_update, args=(gradient, shared), group=False)

    def _fused_update(self, variable, gradient, shared):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        shared = {name: tf.cast(value, dtype) for name, value in shared.items()}  # no-op for float32
        # Under a distribution strategy `variable` is this device's copy; .handle of the (mirrored)
        # slots resolves to the same device inside the update.
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].value.handle, v=self._velocities[index].value.handle,
            beta1_power=shared["beta_1_power"], beta2_power=shared["beta_2_power"], lr=shared["lr"],
            beta1=shared["beta_1"], beta2=shared["beta_2"], epsilon=shared["epsilon"], grad=tf.cast(gradient, dtype))

    def _update_model_variables_moving_average(self, trainable_variables):
        """The weights' moving average (--ema) as one fused op per variable: average -= (1 - momentum) *
        (average - weight), Keras' momentum * average + (1 - momentum) * weight rearranged."""
        if not self.use_ema:
            return
        # As Keras: the first step copies the weights (momentum 0), later steps average them.
        momentum = tf.cast(tf.not_equal(self.iterations, 0), tf.float32) * self.ema_momentum
        for variable, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is None:
                continue
            tf.raw_ops.ResourceApplyGradientDescent(var=average.value.handle,
                                                    alpha=tf.cast(1 - momentum, variable.dtype),
                                                    delta=average.value - variable.value)


class FusedAdam(FusedAdamUpdate, keras.optimizers.Adam):
    """keras.optimizers.Adam with the fused update."""


class FusedAdamW(FusedAdamUpdate, keras.optimizers.AdamW):
    """keras.optimizers.AdamW (decoupled weight decay, applied before the update) with the fused update."""

    def _apply_weight_decay(self, variables):
        """Decoupled weight decay, w <- w - lr * weight_decay * w, as w <- w * (1 - lr * weight_decay): one
        pass over w, where Keras multiplies, then subtracts."""
        if not self.weight_decay:
            return

        def decay(distribution, variables):
            # lr * weight_decay once per step, not once per variable as Keras does (see above).
            rate = tf.cast(self.learning_rate, tf.float32) * tf.cast(self.weight_decay, tf.float32)
            for variable in variables:
                if self._use_weight_decay(variable):
                    variable = variable.value if isinstance(variable, keras.Variable) else variable
                    distribution.extended.update(variable, self._decay_one, args=(rate,), group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(decay, self._distribution_strategy, variables)

    @staticmethod
    def _decay_one(variable, rate):
        # A new tensor assigned in place of the old: 2.6 times faster on the VAE's weights than a fused
        # ResourceApplyGradientDescent(delta=w), which must copy w before it can write it while reading it.
        variable.assign(variable * (1 - tf.cast(rate, variable.dtype)))


class ClipSummedGradients:
    """Clips the global norm of the gradients to clip_norm where Keras has just summed them over replicas
    (TFOptimizer._all_reduce_sum_gradients), so that each gradient crosses replicas once.

    Clipping before apply_gradients needs the summed gradients' norm: the step would sum them itself, then
    Keras again (loop.clip_by_global_norm, the fallback). Keras' own global_clipnorm will not do: it clips
    each replica's gradients, before the sum. Under loss scaling, the gradients here are already unscaled.
    """

    def __init__(self, *args, clip_norm, **kwargs):
        super().__init__(*args, **kwargs)
        self.clip_norm = clip_norm

    def _all_reduce_sum_gradients(self, grads_and_vars):
        summed = super()._all_reduce_sum_gradients(grads_and_vars)
        # Summed over replicas, the gradients are the same on each: every replica computes the same factor.
        norm = tf.linalg.global_norm([gradient for gradient, _ in summed if gradient is not None])
        factor = self.clip_norm / tf.maximum(norm, self.clip_norm)
        return [(None if gradient is None else gradient * tf.cast(factor, gradient.dtype), variable)
                for gradient, variable in summed]


@functools.cache
def clipping_summed_gradients(optimizer_class):
    """optimizer_class with ClipSummedGradients: its constructor takes clip_norm."""
    return type(f"Clipping{optimizer_class.__name__}", (ClipSummedGradients, optimizer_class), {})


def clips_summed_gradients(optimizer):
    """True if `optimizer` (or the one inside its loss scaling) clips the summed gradients itself."""
    return isinstance(getattr(optimizer, "inner_optimizer", optimizer), ClipSummedGradients)


# What FusedAdamUpdate and FusedAdamW read or override in a built Keras optimizer: names private to Keras.
FUSED_NEEDS = ("_distributed_tf_update_step", "_distribution_strategy", "_get_variable_index", "_momentums",
               "_velocities", "_update_model_variables_moving_average", "_model_variables_moving_average",
               "_apply_weight_decay", "_use_weight_decay")

# Settings that take every part of the fused update: a changing learning rate, decay, the moving average.
CHECK_SETTINGS = {"learning_rate": keras.optimizers.schedules.ExponentialDecay(1e-2, 1, 0.5), "beta_1": 0.5,
                  "weight_decay": 0.5, "use_ema": True, "ema_momentum": 0.9}
CHECK_GRADIENT_SCALES = (10.0, 0.1)  # gradients of norm about 30, then 0.3: a clip norm of 1 clips one of two


def adam_class(settings, fused_class=FusedAdam):
    """fused_class (FusedAdam, or FusedAdamW), or the Keras optimizer it extends where --no-fused-optimizer asks
    for it or this Keras cannot take the fused update (fused_update_usable then says why)."""
    if settings.get("fused_optimizer", True) and fused_update_usable(fused_class):
        return fused_class
    return keras_original(fused_class)


def keras_original(fused_class):
    """The Keras optimizer a fused one extends: FusedAdam's Adam, FusedAdamW's AdamW."""
    return next(base for base in fused_class.__mro__ if not issubclass(base, FusedAdamUpdate))


@functools.cache
def fused_update_usable(fused_class):
    """True if fused_class updates a tiny variable as its Keras optimizer does; if not, prints one line saying
    why (once per process: the answer is kept) and returns False."""
    problem = in_a_thread_of_its_own(fused_update_problem, fused_class)
    if problem:
        print(f"warning: --fused-optimizer: Keras' own {keras_original(fused_class).__name__} is used instead, "
              f"as {problem}", file=sys.stderr, flush=True)
    return problem is None


@functools.cache
def summed_clipping_usable(optimizer_class):
    """True if clipping_summed_gradients(optimizer_class) clips as clipping each step's gradients first would;
    if not, prints one line saying why (once per process) and returns False."""
    problem = in_a_thread_of_its_own(summed_clipping_problem, optimizer_class)
    if problem:
        print(f"warning: --clip-norm: the train step clips the gradients, which then cross replicas twice, as "
              f"{problem}", file=sys.stderr, flush=True)
    return problem is None


def in_a_thread_of_its_own(function, *args):
    """function(*args) in a new thread: there no tf.distribute scope is entered and Keras' dtype policy is
    float32 (both are per thread), whatever the caller's; the checks' tiny optimizers need both."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args).result()


def fused_update_problem(fused_class):
    """Why fused_class cannot stand in for its Keras optimizer here (a few words), or None."""
    reference = keras_original(fused_class)
    variables = check_variables()
    try:
        optimizer = fused_class(**CHECK_SETTINGS)
        optimizer.build(variables)
        missing = [name for name in FUSED_NEEDS if not hasattr(optimizer, name)]
        if missing:
            return f"Keras {keras.__version__}'s {reference.__name__} has no {missing[0]}"
        got = weights_after_check_steps(optimizer, variables)
    except Exception as exc:  # noqa: BLE001 - an internal that changed meaning fails in many ways
        return f"{fused_class.__name__} fails with Keras {keras.__version__} ({commands.one_line(exc)})"
    difference = largest_difference(got, weights_after_check_steps(reference(**CHECK_SETTINGS)))
    if difference is not None:
        return (f"{fused_class.__name__} differs from Keras {keras.__version__}'s {reference.__name__} by up to "
                f"{difference:.2g} after {len(CHECK_GRADIENT_SCALES)} steps")
    return None


def summed_clipping_problem(optimizer_class):
    """Why clipping_summed_gradients(optimizer_class) cannot stand in for clipping each step's gradients
    before optimizer_class applies them (a few words), or None."""
    if not hasattr(optimizer_class, "_all_reduce_sum_gradients"):
        return f"Keras {keras.__version__}'s {optimizer_class.__name__} has no _all_reduce_sum_gradients"
    clip_norm = 1.0  # between the check's gradients' norms
    settings = {**CHECK_SETTINGS, "use_ema": False}
    try:
        got = weights_after_check_steps(clipping_summed_gradients(optimizer_class)(clip_norm=clip_norm, **settings))
    except Exception as exc:  # noqa: BLE001
        return f"its clipping fails with Keras {keras.__version__} ({commands.one_line(exc)})"
    expected = weights_after_check_steps(optimizer_class(**settings),
                                         clip=lambda gradients: tf.clip_by_global_norm(gradients, clip_norm)[0])
    difference = largest_difference(got, expected)
    if difference is not None:
        return (f"Keras {keras.__version__}'s {optimizer_class.__name__} does not clip there (weights up to "
                f"{difference:.2g} apart after {len(CHECK_GRADIENT_SCALES)} steps)")
    return None


def check_variables():
    """Two small variables (a kernel, a bias) of fixed values."""
    rng = np.random.default_rng(0)
    return [keras.Variable(rng.standard_normal(shape).astype("float32")) for shape in ((3, 2), (2,))]


def weights_after_check_steps(optimizer, variables=None, clip=lambda gradients: gradients):
    """`variables` (check_variables() if None) and their moving averages after eager updates by `optimizer`
    from fixed gradients, one step per CHECK_GRADIENT_SCALES, each gradient passed through `clip` first."""
    variables = variables or check_variables()
    rng = np.random.default_rng(1)
    for scale in CHECK_GRADIENT_SCALES:
        gradients = [tf.constant(scale * rng.standard_normal(v.shape).astype("float32")) for v in variables]
        optimizer.apply_gradients(zip(clip(gradients), variables))
    averages = optimizer._model_variables_moving_average if optimizer.use_ema else []
    return [np.asarray(v) for v in variables + list(averages)]


def largest_difference(got, expected):
    """None if the arrays are equal up to float32 rounding (the same formula, other ops), else their largest
    absolute difference."""
    if all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(got, expected)):
        return None
    return max(float(np.max(np.abs(a - b))) for a, b in zip(got, expected))


def learning_rate(settings, steps_per_epoch):
    """--learning-rate, or with --lr-schedule cosine its decay to 0 over --lr-decay-epochs; with --warmup-steps
    (the Transformer's) first a linear rise from 0 over that many steps."""
    # A function of the optimizer's step count, which checkpoints hold: a resumed run continues the
    # same curve. Past its end the rate stays at 0 (train longer with a larger --lr-decay-epochs).
    schedule = settings.get("lr_schedule", "constant")  # runs recorded before the GAN had the flag: constant
    warmup_steps = settings.get("warmup_steps", 0)
    if not warmup_steps:
        if schedule == "constant":
            return settings["learning_rate"]
        return keras.optimizers.schedules.CosineDecay(settings["learning_rate"],
                                                       decay_steps=settings["lr_decay_epochs"] * steps_per_epoch)
    # Keras' CosineDecay warms up linearly from its initial rate (0) to warmup_target, then decays over
    # decay_steps: to 0 by the end of --lr-decay-epochs, or (alpha 1: a cosine to 100%) not at all.
    decay_steps = max(1, settings["lr_decay_epochs"] * steps_per_epoch - warmup_steps)
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps, alpha=1.0 if schedule == "constant" else 0.0,
                                                   warmup_target=settings["learning_rate"], warmup_steps=warmup_steps)


def build(settings, steps_per_epoch, mixed_precision):
    """AdamW(learning_rate(...), --weight-decay), clipping the summed gradients to --clip-norm (the text models)
    where this Keras allows it (else the train step clips: clips_summed_gradients), wrapped for loss scaling
    under mixed_float16."""
    # AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019); 0 gives plain Adam.
    adamw, clipping = adam_class(settings, FusedAdamW), {}
    if settings.get("clip_norm") and summed_clipping_usable(adamw):
        adamw, clipping = clipping_summed_gradients(adamw), {"clip_norm": settings["clip_norm"]}
    optimizer = adamw(learning_rate(settings, steps_per_epoch), weight_decay=settings.get("weight_decay", 0.0),
                      **clipping)
    # Under mixed_float16, scale the loss so small float16 gradients do not flush to zero.
    return keras.optimizers.LossScaleOptimizer(optimizer) if mixed_precision else optimizer
