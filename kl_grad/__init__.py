"""kl_grad: is the autograd gradient of your KL loss an unbiased estimate of the KL gradient you meant?"""
