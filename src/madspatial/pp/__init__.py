"""madspatial.pp"""
