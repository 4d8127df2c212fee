"""The stage library: what save_asv_embeddings.py, save_cm_score.py and save_sasv_score.py run
(see pipeline/__init__)."""
