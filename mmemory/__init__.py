"""mmemory: multimodal long-term memory for conversational agents (README).

Importing the package turns Hugging Face Hub telemetry off and the hub offline unless the environment already sets
HF_HUB_DISABLE_TELEMETRY / HF_HUB_OFFLINE (`mmemory.hub`): every rule's script and every `python -m mmemory.*`
command imports it before transformers, TRL or huggingface_hub, so this one place covers them all."""
from mmemory.hub import set_hub_defaults

set_hub_defaults()
