"""Stage 4, publishing: the model card, the Hub upload, the Ollama Modelfile and the loss curve."""
