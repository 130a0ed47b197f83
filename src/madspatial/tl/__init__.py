"""madspatial.tl"""
