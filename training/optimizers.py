"""The optimizer the VAE and the LSTM share: AdamW with an optional cosine learning-rate decay."""

import keras


def build(settings, steps_per_epoch, mixed_precision):
    """AdamW(--learning-rate, --weight-decay), decayed on a cosine over --lr-decay-epochs when
    --lr-schedule cosine, wrapped for loss scaling under mixed_float16."""
    learning_rate = settings["learning_rate"]
    if settings["lr_schedule"] == "cosine":
        # A function of the optimizer's step count, which checkpoints hold: a resumed run continues the
        # same curve. Past its end the rate stays at 0 (train longer with a larger --lr-decay-epochs).
        learning_rate = keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=settings["lr_decay_epochs"] * steps_per_epoch)
    # AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019); 0 gives plain Adam.
    optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=settings.get("weight_decay", 0.0))
    # Under mixed_float16, scale the loss so small float16 gradients do not flush to zero.
    return keras.optimizers.LossScaleOptimizer(optimizer) if mixed_precision else optimizer
