"""madspatial.train"""
