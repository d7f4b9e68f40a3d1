"""Diffusion fill and everything CUDA. Imports torch and diffusers lazily."""
