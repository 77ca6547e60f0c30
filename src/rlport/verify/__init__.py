"""rlport.verify: will a bundle behave here as it did where it was made?"""
