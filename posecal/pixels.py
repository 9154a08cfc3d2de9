"""posecal's one pixel normalisation of crops: the ImageNet statistics, in units of the 0..1 pixel range.

A crop's pixels v (0..255, RGB) reach a network as (v / 255 - IMAGENET_MEAN) / IMAGENET_STD
(posecal.data.crops.crops_to_batch); a network trained on another form converts it inside the model
(posecal.models.input_convention), so the data pipeline never needs to know which network it feeds. Here, below
both, so that the data side and the models read one definition without importing each other.
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
