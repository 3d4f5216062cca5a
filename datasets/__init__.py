"""Data sources and tf.data input pipelines for the three generators."""
