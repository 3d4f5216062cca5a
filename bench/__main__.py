"""`python -m bench`: every benchmark in turn (today the GAN step)."""

from bench import gan_step

if __name__ == "__main__":
    gan_step.main()
