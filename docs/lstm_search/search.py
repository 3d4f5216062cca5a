"""Char-level LSTM recipe search (Keras 3 / TF 2.20, CPU).

Usage:
  python search.py bench --units 256 --batch 64 --seq 100 ...     # quiet throughput (chars/s)
  python search.py train --name ref --budget 180 --lr 1e-3 ...    # train + held-out curve

Data pipeline: training ids are cut, each epoch, into non-overlapping windows of L+1
chars starting at a random shift in [0, L]; windows are shuffled and batched
(drop_remainder).  Stateless training (zero initial state per window).
Every position predicts the next char.  Held-out bpc: held-out text cut into
non-overlapping windows of L inputs (+1 target shift), zero state per window,
mean CE over all positions / ln 2.
"""
import os, sys, time, json, math, argparse, resource

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
import keras

HERE = os.path.dirname(os.path.abspath(__file__))
LOGDIR = os.path.join(HERE, "runs")


def get_data():
    import pydoc_data.topics as t
    text = "\n\n".join(t.topics[k] for k in sorted(t.topics))
    split = int(len(text) * 0.9)
    vocab = sorted(set(text))
    idx = {c: i for i, c in enumerate(vocab)}
    ids = np.array([idx[c] for c in text], dtype=np.int32)
    return ids[:split], ids[split:], len(vocab)


class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to peak, then cosine/linear decay to peak*final_frac at total_steps."""

    def __init__(self, peak, warmup, total, kind="cosine", final_frac=0.05):
        self.peak, self.warmup, self.total = float(peak), float(warmup), float(total)
        self.kind, self.final_frac = kind, float(final_frac)

    def __call__(self, step):
        s = tf.cast(step, tf.float32)
        if self.kind == "const":
            w = tf.minimum(1.0, (s + 1.0) / max(self.warmup, 1.0)) if self.warmup > 0 else 1.0
            return self.peak * w
        w = tf.minimum(1.0, (s + 1.0) / max(self.warmup, 1.0))
        p = tf.clip_by_value((s - self.warmup) / max(self.total - self.warmup, 1.0), 0.0, 1.0)
        if self.kind == "cosine":
            d = 0.5 * (1.0 + tf.cos(math.pi * p))
        else:  # linear
            d = 1.0 - p
        d = self.final_frac + (1.0 - self.final_frac) * d
        return self.peak * tf.where(s < self.warmup, w, d)

    def get_config(self):
        return dict(peak=self.peak, warmup=self.warmup, total=self.total,
                    kind=self.kind, final_frac=self.final_frac)


def build_model(V, a):
    inp = keras.Input((a.seq,), dtype="int32")
    x = keras.layers.Embedding(V, a.emb)(inp)
    for _ in range(a.layers):
        if a.rnn == "lstm":
            x = keras.layers.LSTM(a.units, return_sequences=True, dropout=a.dropout,
                                  unroll=a.unroll)(x)
        else:  # generic keras.layers.RNN wrapper around the stock LSTMCell
            x = keras.layers.RNN(keras.layers.LSTMCell(a.units, dropout=a.dropout),
                                 return_sequences=True, unroll=a.unroll)(x)
    if a.out_dropout > 0:  # non-recurrent dropout on LSTM outputs (before the softmax layer)
        x = keras.layers.Dropout(a.out_dropout)(x)
    out = keras.layers.Dense(V)(x)
    return keras.Model(inp, out)


def make_train_ds(train_ids, L, B):
    ids = tf.constant(train_ids)
    N = len(train_ids)
    n = (N - L) // (L + 1)

    def epoch(_):
        o = tf.random.uniform([], 0, L + 1, dtype=tf.int32)
        w = tf.reshape(ids[o:o + n * (L + 1)], [n, L + 1])
        return tf.data.Dataset.from_tensor_slices(w).shuffle(n).batch(B, drop_remainder=True)

    return tf.data.Dataset.range(1 << 30).flat_map(epoch).prefetch(8), n // B


def make_eval(held_ids, L):
    k = (len(held_ids) - 1) // L
    x = held_ids[:k * L].reshape(k, L)
    y = held_ids[1:k * L + 1].reshape(k, L)
    return x, y


def make_opt(a, total_steps):
    sched = WarmupDecay(a.lr, a.warmup, total_steps, a.sched, a.final_frac)
    kw = dict(learning_rate=sched)
    if a.clip > 0:
        kw["global_clipnorm"] = a.clip
    if a.opt == "adam":
        return keras.optimizers.Adam(**kw), sched
    return keras.optimizers.AdamW(weight_decay=a.wd, **kw), sched


def setup(a):
    keras.utils.set_random_seed(a.seed)
    tr, he, V = get_data()
    model = build_model(V, a)
    ds, steps_per_epoch = make_train_ds(tr, a.seq, a.batch)
    total = a.total_steps if a.total_steps > 0 else 10 ** 9
    opt, sched = make_opt(a, total)
    opt.build(model.trainable_variables)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    tv = model.trainable_variables

    def one_step(w):
        x, y = w[:, :-1], w[:, 1:]
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(ce(y, logits))
        g = tape.gradient(loss, tv)
        opt.apply_gradients(zip(g, tv))
        return loss

    if a.jit:
        one_step = tf.function(one_step, jit_compile=True)

    @tf.function
    def train_k(it, k):
        tot = tf.constant(0.0)
        for _ in tf.range(k):
            tot += one_step(next(it))
        return tot / tf.cast(k, tf.float32)

    @tf.function
    def eval_sum(x, y):
        return tf.reduce_sum(ce(y, model(x, training=False)))

    ex, ey = make_eval(he, a.seq)

    def evaluate():
        s, n = 0.0, 0
        for i in range(0, len(ex), 256):
            xb, yb = ex[i:i + 256], ey[i:i + 256]
            s += float(eval_sum(tf.constant(xb), tf.constant(yb)))
            n += yb.size
        return s / n / math.log(2)

    return model, opt, sched, iter(ds), train_k, evaluate, steps_per_epoch, V


def cpu_times():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sys_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


def steps_per_call(a):
    return max(1, a.call_chars // (a.batch * a.seq))


def bench(a):
    model, opt, sched, it, train_k, evaluate, spe, V = setup(a)
    k = steps_per_call(a)
    t0 = time.time()
    train_k(it, tf.constant(k))  # compile + warm
    comp = time.time() - t0
    t0, c0, (b0, a0) = time.time(), cpu_times(), sys_busy()
    steps = 0
    while time.time() - t0 < a.bench_sec:
        train_k(it, tf.constant(k))
        steps += k
    dt = time.time() - t0
    c1, (b1, a1) = cpu_times(), sys_busy()
    rate = steps * a.batch * a.seq / dt
    my_cores = (c1 - c0) / dt
    sys_cores = 2.0 * (b1 - b0) / max(a1 - a0, 1)
    res = dict(mode="bench", name=a.name, cfg=vars(a), params=model.count_params(),
               chars_per_s=rate, step_ms=1000 * dt / steps, steps=steps, sec=dt,
               compile_s=comp, my_cores=my_cores, sys_cores=sys_cores)
    print(json.dumps({k_: v for k_, v in res.items() if k_ != "cfg"}), flush=True)
    with open(os.path.join(LOGDIR, "bench.jsonl"), "a") as f:
        f.write(json.dumps(res) + "\n")


def train(a):
    model, opt, sched, it, train_k, evaluate, spe, V = setup(a)
    k = steps_per_call(a)
    cpl = a.batch * a.seq
    print(f"[{a.name}] params={model.count_params()} steps/epoch={spe} steps/call={k} "
          f"total_steps={a.total_steps}", flush=True)
    wall0 = time.time()
    curve = []
    t_train, steps, next_eval = 0.0, 0, a.eval_sec
    comp = None
    c0, (b0, a0) = cpu_times(), sys_busy()
    b0_ = evaluate()
    curve.append(dict(step=0, chars=0, train_s=0.0, bpc=b0_, loss=None))
    while True:
        kk = k
        if a.total_steps > 0:
            kk = min(k, a.total_steps - steps)
        t0 = time.time()
        loss = float(train_k(it, tf.constant(kk)))
        dt = time.time() - t0
        if comp is None:
            comp = dt  # first call includes tracing; count it in train time too
        t_train += dt
        steps += kk
        done = (t_train >= a.budget) or (a.total_steps > 0 and steps >= a.total_steps)
        if t_train >= next_eval or done:
            bpc = evaluate()
            lr = float(sched(steps))
            curve.append(dict(step=steps, chars=steps * cpl, train_s=round(t_train, 2), bpc=bpc,
                              loss=loss / math.log(2), lr=lr, epoch=steps / spe))
            print(f"[{a.name}] step {steps} ep {steps / spe:.2f} train_s {t_train:.1f} "
                  f"train_bpc {loss / math.log(2):.3f} heldout_bpc {bpc:.4f} lr {lr:.2e}", flush=True)
            while next_eval <= t_train:
                next_eval += a.eval_sec
        if done:
            break
    wall = time.time() - wall0
    c1, (b1, a1) = cpu_times(), sys_busy()
    res = dict(mode="train", name=a.name, cfg=vars(a), params=model.count_params(),
               steps=steps, chars=steps * cpl, train_s=t_train, wall_s=wall, first_call_s=comp,
               chars_per_s_run=steps * cpl / t_train, my_cores=(c1 - c0) / wall,
               sys_cores=2.0 * (b1 - b0) / max(a1 - a0, 1),
               best_bpc=min(c["bpc"] for c in curve), curve=curve)
    with open(os.path.join(LOGDIR, "train.jsonl"), "a") as f:
        f.write(json.dumps(res) + "\n")
    print(json.dumps({k_: v for k_, v in res.items() if k_ not in ("cfg", "curve")}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["bench", "train"])
    p.add_argument("--name", default="run")
    p.add_argument("--emb", type=int, default=64)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--seq", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sched", default="const", choices=["const", "cosine", "linear"])
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--final_frac", type=float, default=0.05)
    p.add_argument("--total_steps", type=int, default=0)
    p.add_argument("--clip", type=float, default=0.0)
    p.add_argument("--opt", default="adam", choices=["adam", "adamw"])
    p.add_argument("--wd", type=float, default=0.01)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--out_dropout", type=float, default=0.0)
    p.add_argument("--rnn", default="lstm", choices=["lstm", "rnncell"])
    p.add_argument("--unroll", type=int, default=0)
    p.add_argument("--jit", type=int, default=0)
    p.add_argument("--budget", type=float, default=180)
    p.add_argument("--eval_sec", type=float, default=30)
    p.add_argument("--call_chars", type=int, default=100000)
    p.add_argument("--bench_sec", type=float, default=15)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    a.unroll, a.jit = bool(a.unroll), bool(a.jit)
    os.makedirs(LOGDIR, exist_ok=True)
    bench(a) if a.mode == "bench" else train(a)


if __name__ == "__main__":
    main()
