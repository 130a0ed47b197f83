"""madspatial.datasets"""
