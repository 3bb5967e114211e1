"""The embedded default's toy world, built by the workflow itself (offline, minutes on a CPU):

    visdial   toy VisDial v1.0: coloured-shape images, captions, dialogues whose answers follow from the image;
              train, val and test disjoint by scene
    models    the tiny tokenizer, Llama, Gemma-3 and CLIP, saved with save_pretrained (rule build_toy_models)
    pretrain  the toy CLIP's contrastive training and the toy LM's pre-training on the train split (emr stage)

Everything after them loads models by path through the same code as the paper-scale checkpoints.
"""
