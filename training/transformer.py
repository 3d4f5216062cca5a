"""Training the decoder-only Transformer: the LSTM's text task (windows, vocabulary, held-out split, steps,
samples, export; training/lstm.py) with the Transformer as its model.

A window of context + 1 characters is read at once; the causal mask lets position t see only 0 .. t, so
every position is scored on the character after it, as in the LSTM:

    window   T  h  e     c  a  t
    inputs   T  h  e     c  a          each position attends to itself and the ones before it
    targets  h  e     c  a  t
"""

import tensorflow as tf

from models import fused_transformer
from models import transformer as transformer_models
from training.lstm import LstmTask


class TransformerTask(LstmTask):
    """LstmTask with the Transformer: its own model, logits and KV-cache sampler."""

    name = "transformer"
    length_flag = "context"
    curves_title = "Transformer training"

    def build_model(self, settings):
        # The same function computed faster on a CPU (models/fused_transformer.py), unless
        # --no-fused-transformer or a GPU.
        self.use_fused_transformer = fused_transformer.use_fused_transformer(settings.get("fused_transformer", True))
        return transformer_models.build_transformer_lm(len(self.vocabulary), settings["context"], settings["d_model"],
                                                       settings["heads"], settings["layers"], settings["dropout"],
                                                       tied=settings["tied"])

    def logits(self, ids, training=False):
        if self.use_fused_transformer:
            return fused_transformer.text_logits(self.model, ids, training=training)
        return self.model(ids, training=training)

    def feature_tensor(self):
        return self.model.get_layer("final_norm").output

    def features(self, ids, training=False):
        if self.use_fused_transformer:
            return fused_transformer.text_features(self.model, ids, training=training)
        return self.feature_model(ids, training=training)

    def output_weights(self):
        """Tied: the token embedding's table, no bias (models/transformer.py: TiedEmbedding); else the Dense's."""
        if any(layer.name == "logits" for layer in self.model.layers):
            return super().output_weights()
        table = self.model.get_layer("token_embedding").embeddings
        return table, tf.zeros(table.shape[:1], table.dtype)

    @staticmethod
    def make_sampler(model):
        return transformer_models.TransformerSampler(model)
