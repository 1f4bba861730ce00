"""`make bench`: what orchestration costs on top of the fleet, side by side with the floors."""
