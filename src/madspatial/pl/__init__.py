"""madspatial.pl"""
