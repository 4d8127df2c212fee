"""The SASV pipeline on top of the library packages (asv, cm, fusion, data, metrics, engine), by job:

    stages/    the stage library behind save_asv_embeddings.py, save_cm_score.py and save_sasv_score.py:
               the experiment a config describes and its checks, extraction, caches, front-end building,
               the ASV, CM and SASV stages and their outputs
    recipes/   the training recipes behind main.py: ASV and CM front-end training, SASV back-ends trained
               on cached embeddings (frozen) or end to end with the front-ends (joint)
    tools/     what runs on a finished experiment: the fusion ablation grid (ablate.py), single-trial
               verification (verify.py)

Dependencies point one way: tools -> recipes -> stages -> library.
"""
