"""What results turn into: the board, the energy label, the HTML report."""
