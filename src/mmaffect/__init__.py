"""mmaffect: end-to-end multimodal time-continuous affect recognition.

Implements Tzirakis, Chen, Zafeiriou & Schuller, "End-to-end multimodal affect
recognition in real-world environments", Information Fusion 2021.
"""

__version__ = "0.1.0"
