"""madspatial.metrics"""
