"""Insights: chart data, allocation, forecasts, anomalies, recommendations, ROI, experiments."""
