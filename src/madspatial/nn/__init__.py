"""madspatial.nn"""
