"""The optimizers: Adam (the GAN) and AdamW with an optional cosine learning-rate decay (the VAE and the
LSTM), each updating its variables with TensorFlow's fused Adam kernel."""

import keras
import tensorflow as tf


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


def adam_class(settings):
    """(Adam, AdamW) classes: the fused ones unless --no-fused-optimizer."""
    if settings.get("fused_optimizer", True):
        return FusedAdam, FusedAdamW
    return keras.optimizers.Adam, keras.optimizers.AdamW


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
    """AdamW(learning_rate(...), --weight-decay), wrapped for loss scaling under mixed_float16."""
    # AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019); 0 gives plain Adam.
    optimizer = adam_class(settings)[1](learning_rate(settings, steps_per_epoch),
                                        weight_decay=settings.get("weight_decay", 0.0))
    # Under mixed_float16, scale the loss so small float16 gradients do not flush to zero.
    return keras.optimizers.LossScaleOptimizer(optimizer) if mixed_precision else optimizer
