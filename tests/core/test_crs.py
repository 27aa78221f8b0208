import pytest

from topt_core.crs import utm_epsg_for
from topt_core.errors import ToptDataError


@pytest.mark.parametrize("lon,lat,epsg", [(-73.97, 40.78, 32618), (2.35, 48.86, 32631), (151.2, -33.9, 32756),
                                          (5.3, 60.4, 32632), (15.6, 78.2, 32633), (0, 88, 32661)])
def test_utm_zone(lon, lat, epsg):
    assert utm_epsg_for(lon, lat) == epsg


def test_invalid_centre_is_refused():
    with pytest.raises(ToptDataError, match="DISTANCE_CRS"):
        utm_epsg_for(float("nan"), 3.0)
