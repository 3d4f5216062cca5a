"""Standalone Keras model builders for the tutorial's generators; no training code lives here."""
